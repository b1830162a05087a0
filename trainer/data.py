"""A run's data: the images, decoded once into memory, and for a conditional recipe their classes,
measured on the images themselves (the data has no labels).

    images, labels, names, info = load_data(Path("data/anime-faces-64.zip"), recipe)
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from core.attributes import CLASS_SETS
from core.dataset import dataset_fingerprint, load_images
from trainer.config import Recipe
from trainer.run_state import TrainingError

log = logging.getLogger("trainer")


def class_labels(recipe: Recipe, images: np.ndarray, names: list[str] | None = None) -> tuple[np.ndarray | None, list[str]]:
    """Per-image classes from the recipe's class set; a continued or fine-tuned run must keep its
    class names and their order."""
    if not recipe.classes:
        return None, []
    labels, found = CLASS_SETS[recipe.classes](images)
    if names and list(names) != list(found):
        raise TrainingError(f"the checkpoint's classes ({', '.join(names)}) are not class set "
                            f"{recipe.classes!r}'s ({', '.join(found)})")
    counts = np.bincount(labels, minlength=len(found))
    log.info("classes (%s): %s", recipe.classes, ", ".join(f"{n} {c}" for n, c in zip(found, counts)))
    return labels, found


def load_data(path: Path, recipe: Recipe, known: dict | None = None, class_names: list[str] | None = None,
              progress: bool = True) -> tuple[np.ndarray, np.ndarray | None, list[str], dict]:
    """(images uint8 [N, 64, 64, 3], their classes or None, the class names, the data's record: path,
    size, unreadable files skipped, sha256). A continued run passes its saved record as `known`."""
    if not path.exists():
        raise TrainingError(f"data set not found: {path}: give --data a folder or .zip of face images (docs/data.md)")
    images, skipped = load_images(path, progress=progress)
    if skipped:
        log.warning("skipped %d unreadable image(s) in %s", skipped, path)
    info = known or {"path": str(path), "images": int(len(images)), "skipped": skipped,
                     "sha256": dataset_fingerprint(path)}
    log.info("data: %d images from %s (%d skipped)", len(images), path, skipped)
    labels, names = class_labels(recipe, images, class_names)
    return images, labels, names, info
