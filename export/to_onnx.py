"""Convert Generator.pth to a verified ONNX generator (plus fp16 and int8 variants).

    python export/to_onnx.py                                   # newest runs/*/Generator.pth -> generator.onnx
    python -m export.to_onnx                                   # the same
    python -m export.to_onnx --checkpoint runs/best --out demo/models/generator.onnx --fp16 --int8

Nothing is written unless it matches PyTorch within the variant's tolerance on 256 seeds; missing
folders of --out are created, as the other commands do.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


from core.errors import UserError, command, require
from core.files import atomic_write_text

VARIANT_NAMES = ("fp16", "fp32", "int8")  # export.onnx_export.VARIANTS (tested); named here so --help needs no torch
EARLY_IMAGES = 50_000  # below this, a run from zero draws noise or a grey pattern (docs/training.md, "How long")


def early_warning(card: dict) -> str | None:
    """A warning for a generator trained from zero on too few images (a fine-tune or a distillation
    starts from trained weights, so its count says nothing)."""
    seen = card.get("images_seen")
    if not isinstance(seen, int) or seen >= EARLY_IMAGES or card.get("finetuned_from") or card.get("weights") == "distilled":
        return None
    return (f"this run has seen only {seen:,} real images: a GAN trained from zero draws noise or a grey pattern "
            f"until about {EARLY_IMAGES // 1000}k and faces after about 100k (docs/training.md, 'How long'); "
            f"exporting it anyway")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m export.to_onnx", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="Generator.pth or a run folder (default: newest runs/*/Generator.pth)")
    p.add_argument("--config", help="generator.json (default: beside the checkpoint)")
    p.add_argument("--out", type=Path, default=Path("generator.onnx"), help="output .onnx (default generator.onnx)")
    p.add_argument("--fp16", action="store_true", help="also write <out>-fp16.onnx (float16 weights and compute)")
    p.add_argument("--int8", action="store_true", help="also write <out>-int8.onnx (QDQ int8, last layer float)")
    p.add_argument("--only", choices=VARIANT_NAMES, help="write only this variant at --out")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--no-fold", action="store_true", help="keep BatchNorm as separate nodes")
    p.add_argument("--eval", type=Path, help="evaluation report (eval.json) whose FID goes into the metadata "
                                             "(default: eval.json beside a Generator.pth, when present); "
                                             "eval-fp16.json and eval-int8.json beside it serve the variants")
    p.add_argument("--model-card", help="free text stored as the model_card metadata entry")
    p.add_argument("--report", type=Path, help="parity report JSON (default: <out>.parity.json)")
    return p.parse_args(argv)


@command
def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.out.suffix != ".onnx":
        raise UserError(f"--out must end in .onnx: {a.out}")
    require("export", "torch", "onnx")
    from export.onnx_export import TOLERANCE, VARIANTS, to_onnx_fp32, variant_path, write_verified
    from networks.files import find_checkpoint, load_generator
    from networks import fold_batchnorm

    ckpt = find_checkpoint(a.checkpoint)
    g, card = load_generator(ckpt, a.config)
    warning = early_warning(card)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    if a.model_card:
        card["model_card"] = a.model_card
    # a run's eval.json measured its Generator.pth, not another checkpoint beside it (Generator-best.pth)
    eval_path = a.eval or (ckpt.parent / "eval.json" if ckpt.name == "Generator.pth" else None)

    def fid_of(variant: str) -> dict | None:
        # eval.json for fp32; eval-fp16.json / eval-int8.json beside it for the variants
        if eval_path is None:
            return None
        p = eval_path if variant == "fp32" else eval_path.with_name(f"{eval_path.stem}-{variant}.json")
        return json.loads(p.read_text()) if p.is_file() else None
    fp32 = to_onnx_fp32(g if a.no_fold else fold_batchnorm(g), g.z_dim, a.opset)
    variants = [a.only] if a.only else ["fp32"] + (["fp16"] if a.fp16 else []) + (["int8"] if a.int8 else [])
    results = []
    for v in variants:
        out = a.out if a.only else variant_path(a.out, v)
        results.append(write_verified(g, VARIANTS[v](fp32, g.z_dim, getattr(g, "n_classes", 0)), v, out, card,
                                      fid_of(v)))
    print(f"{'variant':8} {'provider':6} {'batch':>5} {'max abs diff':>13} {'mean abs diff':>14} {'limit':>7}")
    for r in results:
        for row in r.parity:
            print(f"{r.variant:8} {row['provider']:6} {row['batch']:5d} {row['max_abs']:13.3e} "
                  f"{row['mean_abs']:14.3e} {TOLERANCE[r.variant]:7g}")
    report = {"checkpoint": str(ckpt), "variants": [
        {"variant": r.variant, "path": str(r.path), "bytes": r.bytes, "passed": r.passed,
         "message": r.message, "parity": r.parity} for r in results]}
    report_path = a.report or a.out.with_suffix(".parity.json")
    atomic_write_text(report_path, json.dumps(report, indent=2) + "\n", make_parents=True)
    failed = [r for r in results if not r.passed]
    for r in results:
        print(("wrote " + f"{r.path} ({r.bytes / 1e6:.2f} MB): " if r.passed else "NOT written: ") + r.message)
    print(f"parity report: {report_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
