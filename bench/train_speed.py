"""Training images/second for a recipe on this device (random pixels: the step's cost does not
depend on content).

    python bench/train_speed.py --recipe seed-dcgan --steps 20
    python bench/train_speed.py --recipe best --device cuda --batch-size 512 --bf16 --channels-last
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from trainer.train import Trainer, hardware_name, parse_args, recipe_from_args  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20, help="timed generator steps (after 3 warm-up steps)")
    p.add_argument("--images", type=int, default=4096, help="size of the random in-memory data set")
    a, rest = p.parse_known_args()
    args = parse_args(["--data", "unused", "--quiet", *rest])
    recipe = recipe_from_args(args)
    images = np.random.RandomState(0).randint(0, 256, (a.images, 64, 64, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as out:
        t = Trainer(recipe, images, Path(out), args, {"path": "random", "images": a.images})
        perm = torch.randperm(a.images)
        per_step = recipe.n_critic * recipe.batch_size
        batches = t.batches_per_epoch

        def step(i: int) -> None:
            k = (i * recipe.n_critic) % max(1, batches - recipe.n_critic + 1)
            t.train_step([t.real_batch(perm, k + j) for j in range(recipe.n_critic)])

        for i in range(3):
            step(i)
        if t.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(a.steps):
            step(i)
        if t.device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    print(f"recipe {recipe.name} (G width {recipe.g_width}, D width {recipe.d_width}, batch {recipe.batch_size}) "
          f"on {hardware_name(t.device)}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"settings: {t.speed_flags}")
    print(f"{a.steps * per_step / dt:.1f} images/s, {1000 * dt / a.steps:.1f} ms per generator step; "
          f"an epoch of 22,969 images takes {22969 / (a.steps * per_step / dt) / 60:.1f} min")


if __name__ == "__main__":
    main()
