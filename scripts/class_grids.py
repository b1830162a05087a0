"""The hair-colour classes of the real training images: how many per class, and a grid of 64 random
images of each, to judge by eye how many a person would put in that class.

    python -m scripts.class_grids --data ../shared/data/anime-faces-64.zip --out build/classes

The grids hold training images, so they go to an ignored folder (build/) and are never committed;
README's table gives the counts and the shares judged from these grids.
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
from core.errors import command
from core.images import make_grid


@command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.class_grids", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--classes", default="hair", choices=CLASS_SETS.names())
    p.add_argument("--out", type=Path, default=Path("build/classes"))
    p.add_argument("--seed", type=int, default=0, help="which 64 of each class (default 0)")
    a = p.parse_args(argv)
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
