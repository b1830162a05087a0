"""Training images/second for recipes and speed settings on this device (random pixels: a step's
cost does not depend on content), and proof that the step loop does not wait for the device.

    python -m bench.train_speed --recipes seed-dcgan,best --steps 4
    python -m bench.train_speed --device cuda --recipes best,resnet,r3 --settings tf32 bf16 bf16+cl bf16+compile
    python -m bench.train_speed --recipes best --batch-size 512 --lr-g 2e-4   # any recipe override

For each recipe and setting: images/s, ms per generator step, the arithmetic of one step per real
image (torch's FlopCounterMode: multiply-adds count 2), and two counts per step: values our
code reads back from tensors (.item(), float(), bool(), .tolist(), ...; expected 0), and on CUDA the
synchronisations torch itself reports (torch.cuda.set_sync_debug_mode; expected 0).
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
import warnings
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]

import numpy as np
import torch

from trainer.options import new_recipe, options_from, parse_args
from trainer.run_files import device_name
from trainer.run_state import RunState
from trainer.step import epoch_permutation, real_batch, train_step
from trainer.data import class_labels

READS = ("item", "__float__", "__int__", "__bool__", "tolist", "numpy", "cpu")
# fp32 and tf32 pin the arithmetic: the trainer's default, --precision auto, takes bf16 on CPUs that
# have it, and a side-by-side would then time bf16 twice.
SETTINGS = {"fp32": ["--precision", "fp32"], "tf32": ["--precision", "fp32"], "bf16": ["--precision", "bf16"],
            "cl": ["--channels-last"], "compile": ["--compile"]}


@contextlib.contextmanager
def count_host_reads(roots: tuple[Path, ...] = (ROOT / "trainer", ROOT / "core")) -> Iterator[list[str]]:
    """Record every tensor -> host read made by code under `roots` (not by torch itself)."""
    reads: list[str] = []
    originals = {n: getattr(torch.Tensor, n) for n in READS}
    prefixes = tuple(str(r) for r in roots)

    def patch(name, original):
        def counted(self, *args, **kwargs):
            caller = sys._getframe(1)
            if caller.f_code.co_filename.startswith(prefixes):
                reads.append(f"{name} at {Path(caller.f_code.co_filename).name}:{caller.f_lineno}")
            return original(self, *args, **kwargs)
        return counted

    for name, original in originals.items():
        setattr(torch.Tensor, name, patch(name, original))
    try:
        yield reads
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


class _GlobalOnly:
    """A stand-in for FlopCounterMode's module tracker: every count goes to the global total."""
    parents = ("Global",)

    def __enter__(self) -> "_GlobalOnly":
        return self

    def __exit__(self, *exc) -> None:
        return None


def measure(recipe_name: str, setting: str, extra: list[str], steps: int, device: str, images: np.ndarray) -> dict:
    flags = [f for part in setting.split("+") for f in SETTINGS[part]] + (["--no-tf32"] if setting == "fp32" else [])
    args = parse_args(["--data", "unused", "--quiet", "--recipe", recipe_name, "--device", device, *flags, *extra])
    recipe = new_recipe(args)[0]
    t = RunState(recipe, options_from(args), images, {"path": "random", "images": len(images)},
                 *class_labels(recipe, images))
    perm = epoch_permutation(len(images), 0, 0).to(t.device)
    usable = t.batches_per_epoch - recipe.n_critic + 1

    def step(i: int) -> None:
        k = (i * recipe.n_critic) % usable
        train_step(t, [real_batch(t, perm, k + j) for j in range(recipe.n_critic)])

    cuda = t.device.type == "cuda"
    for i in range(3):  # warm-up: cuDNN autotuning, compilation, allocator
        step(i)
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    # Only the total is needed: without per-module tracking, whose backward hooks torch refuses
    # inside the double backward of the R1/R2 penalties (autograd.grad with create_graph).
    counter.mod_tracker = _GlobalOnly()
    with counter as flops:  # one step's arithmetic, counted by torch (not timed)
        step(3)
    gflop_per_image = flops.get_total_flops() / (recipe.n_critic * recipe.batch_size) / 1e9
    if cuda:
        torch.cuda.synchronize()
    with count_host_reads() as reads, warnings.catch_warnings(record=True) as syncs:
        warnings.simplefilter("always")
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        t0 = time.perf_counter()
        for i in range(steps):
            step(i)
        if cuda:
            torch.cuda.set_sync_debug_mode("default")
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    cuda_syncs = sum("synchroniz" in str(w.message) for w in syncs) if cuda else None
    per_step = recipe.n_critic * recipe.batch_size
    return {"recipe": recipe_name, "setting": setting + ("" if t.speed_flags["compile"] or "compile" not in setting
                                                         else " (compile failed: eager)"),
            "batch": recipe.batch_size, "autocast": "bf16" if t.bf16 else "-", "images_per_s": steps * per_step / dt, "ms_per_step": 1000 * dt / steps,
            "gflop_per_image": gflop_per_image,
            "reads_per_step": len(reads) / steps, "cuda_syncs_per_step": None if cuda_syncs is None else cuda_syncs / steps,
            "hardware": device_name(t.device)}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", default="best", help="comma list of recipes (default best)")
    p.add_argument("--settings", nargs="+", default=["tf32"],
                   help="speed settings, parts joined by +: fp32 tf32 bf16 cl compile (default tf32; --settings fp32 bf16 "
                        "shows the two side by side)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--steps", type=int, default=20, help="timed generator steps (after 3 warm-up steps)")
    p.add_argument("--images", type=int, default=4096, help="size of the random in-memory data set")
    a, extra = p.parse_known_args(argv)
    for s in a.settings:
        bad = [part for part in s.split("+") if part not in SETTINGS]
        if bad:
            p.error(f"unknown setting {bad[0]!r}; parts: {', '.join(SETTINGS)}")
    images = np.random.RandomState(0).randint(0, 256, (a.images, 64, 64, 3), dtype=np.uint8)
    rows = [measure(r, s, extra, a.steps, a.device, images) for r in a.recipes.split(",") for s in a.settings]
    print(f"{rows[0]['hardware']}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"{'recipe':12} {'setting':22} {'autocast':>8} {'batch':>5} {'images/s':>10} {'ms/step':>9} {'GFLOP/img':>10} "
          f"{'GFLOP/s':>8} {'reads/step':>11} {'syncs/step':>11}")
    for r in rows:
        syncs = "-" if r["cuda_syncs_per_step"] is None else f"{r['cuda_syncs_per_step']:.1f}"
        print(f"{r['recipe']:12} {r['setting']:22} {r['autocast']:>8} {r['batch']:5d} {r['images_per_s']:10.1f} {r['ms_per_step']:9.1f} "
              f"{r['gflop_per_image']:10.2f} {r['gflop_per_image'] * r['images_per_s']:8.0f} "
              f"{r['reads_per_step']:11.1f} {syncs:>11}")
    return rows


if __name__ == "__main__":
    main()
