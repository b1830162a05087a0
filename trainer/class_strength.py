"""A conditional run at another class strength, as a new run folder that export, the metrics and
`scripts/ship_model.sh` take like any other.

    python -m trainer.class_strength --run runs/cgan-transfer --strength 1.5 --out runs/cgan-transfer-s1.5

The class's weights in G's first layer are multiplied by the strength (see the generator's
`strengthen_class`): a post-training knob like truncation, but for the class, trading some FID for
class accuracy without a step of training. generator.json keeps everything it said and records the
strength (a run that already had one multiplies it), so the exported ONNX and the model card carry
it. The run's losses.png comes along (the same training); its evals.csv does not (measured at the
old strength). Nothing is written when the run cannot take a strength, and an existing folder is
never overwritten.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from core.errors import UserError, command, require


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trainer.class_strength", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="a conditional run folder (Generator.pth, generator.json)")
    p.add_argument("--strength", type=float, required=True, help="factor for the class's weights (1 = as trained)")
    p.add_argument("--out", type=Path, required=True, help="the new run folder (must not exist)")
    return p.parse_args(argv)


def strengthen(run: Path, strength: float, out: Path) -> dict:
    """Write `out` (Generator.pth, generator.json, losses.png) from `run` at `strength`; returns
    the new generator.json."""
    from trainer.checkpoint import save_json, save_torch
    from trainer.generator_io import find_checkpoint, load_generator

    if not 0 < strength <= 10:
        raise UserError(f"--strength must be in (0, 10], got {strength:g}")
    if out.exists():
        raise UserError(f"{out} exists; choose a new folder (a run folder is never overwritten)")
    run = find_checkpoint(run).parent  # a run folder or its Generator.pth, as export takes them
    g, info = load_generator(run)
    if not callable(getattr(g, "strengthen_class", None)):
        raise UserError(f"{run}: a {info['arch'].get('name', 'dcgan')} generator takes no class strength "
                        f"(it needs a conditional DCGAN whose class enters through the first layer)")
    try:
        g.strengthen_class(strength)
    except ValueError as exc:
        raise UserError(f"{run}: {exc}") from None
    info = dict(info, class_strength=round(info.get("class_strength", 1.0) * strength, 6),
                strengthened_from=str(run))
    out.mkdir(parents=True)
    try:
        save_torch({k: v.detach().cpu() for k, v in g.state_dict().items()}, out / "Generator.pth")
        save_json(info, out / "generator.json")
        if (run / "losses.png").is_file():
            shutil.copyfile(run / "losses.png", out / "losses.png")
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # a folder it made and could not finish: none at all
        raise
    return info


@command
def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    require("changing a class strength", "torch")
    info = strengthen(a.run, a.strength, a.out)
    print(f"wrote {a.out} (class strength {info['class_strength']:g}): export it with "
          f"python -m export.to_onnx --checkpoint {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
