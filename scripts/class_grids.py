"""The hair-colour classes: of the real training images (how many per class, and a grid of 64 random
images of each, to judge by eye how many a person would put in that class), or of a conditional
model (one row per class, the same seeds in every row).

    python -m scripts.class_grids --data data/anime-faces-64.zip --out build/classes
    python -m scripts.class_grids --model demo/models/cgan-w64.onnx --out docs/models/cgan-w64/classes.png

The real images' grids hold training images, so they go to an ignored folder (build/) and are never
committed; docs/conditional.md gives the counts and the shares judged from these grids.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from core.attributes import CLASS_SETS
from core.dataset import load_images
from core.errors import UserError, command
from core.images import make_grid


def model_rows(model: Path, seeds: str, out: Path) -> int:
    """One row per class of a conditional model, the same seeds in every row, the class named at left."""
    from PIL import ImageDraw

    from core.seeds import parse_seeds
    from runtime.engine import Engine

    engine = Engine.load(model, "cpu")
    if not engine.classes:
        raise UserError(f"{model} has no classes")
    picked = parse_seeds(seeds, 16, "--seeds")
    rows = [make_grid(engine.faces(picked, cls=name), cols=len(picked)) for name in engine.classes]
    label_w = 70
    sheet = Image.new("RGB", (label_w + rows[0].shape[1], sum(r.shape[0] for r in rows)), "white")
    draw, y = ImageDraw.Draw(sheet), 0
    for name, row in zip(engine.classes, rows):
        sheet.paste(Image.fromarray(row), (label_w, y))
        draw.text((6, y + row.shape[0] // 2 - 6), name, fill="black")
        y += row.shape[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    print(json.dumps({"model": str(model), "classes": engine.classes, "seeds": seeds, "out": str(out)}))
    return 0


@command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.class_grids", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="real images: counts and a grid per class")
    p.add_argument("--model", type=Path, help="a conditional .onnx model: one picture, a row per class")
    p.add_argument("--seeds", default="0-7", help="--model: the seeds of every row (default 0-7)")
    p.add_argument("--classes", default="hair", choices=CLASS_SETS.names())
    p.add_argument("--out", type=Path, default=Path("build/classes"))
    p.add_argument("--seed", type=int, default=0, help="which 64 of each class (default 0)")
    a = p.parse_args(argv)
    if a.model:
        return model_rows(a.model, a.seeds, a.out)
    if not a.data:
        p.error("give --data (real images) or --model (a conditional model)")
    images, _ = load_images(a.data, progress=True)
    labels, names = CLASS_SETS[a.classes](images)
    a.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(a.seed)
    counts = {}
    for k, name in enumerate(names):
        idx = np.flatnonzero(labels == k)
        counts[name] = int(len(idx))
        if len(idx):
            pick = rng.choice(idx, min(64, len(idx)), replace=False)
            Image.fromarray(make_grid(images[pick], cols=8)).save(a.out / f"{k:02d}-{name}.png")
    (a.out / "counts.json").write_text(json.dumps(counts, indent=2) + "\n")
    print(json.dumps({"images": int(len(images)), "counts": counts, "grids": str(a.out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
