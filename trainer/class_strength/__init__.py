"""A conditional run at another class strength (python -m trainer.class_strength), as a new run
folder that export, the metrics and scripts/ship_model.sh take like any other.

The class's weights in G's first layer are multiplied by the strength (the generator's
`strengthen_class`): a post-training knob like truncation, but for the class, trading some FID for
class accuracy without a step of training. generator.json records the strength (a run that already
had one multiplies it), so the ONNX file and the model card carry it. Nothing is written when the
run cannot take a strength, and an existing folder is never overwritten.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from core.errors import UserError


def strengthen(run: Path, strength: float, out: Path) -> dict:
    """Write `out` (Generator.pth, generator.json, losses.png) from `run` at `strength`; returns
    the new generator.json."""
    from networks.files import find_checkpoint, load_generator, save_json, save_torch

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
