"""Train a GAN on 64x64 faces and write a run folder whose Generator.pth export and the app take.

examples:
  python -m trainer.train --data data/anime-faces-64.zip --recipe best --out runs/best
  python -m trainer.train --resume runs/best                          # continue where it stopped
  python -m trainer.train --data data/my_faces/ --recipe wgan-gp --g-width 64 --kimg 200
  python -m trainer.train --finetune demo/models/generator.onnx --data data/my_faces/ --out runs/mine
  torchrun --nproc_per_node 2 -m trainer.train --data data/anime-faces-64.zip   # several GPUs

The command: options, data and the run folder, then the loop (docs/training.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from core.attributes import CLASS_SETS
from core.dataset import dataset_fingerprint, load_images
from core.errors import UserError
from trainer.checkpoint import load_torch
from trainer.compact import rewarm
from trainer.config import Recipe
from trainer.networks import discriminator_for, generator_for
from trainer.options import parse_args, recipe_from_args, run_options_from
from trainer.run_files import check_writable, output_bytes, parameter_count, remove_stale_temporaries
from trainer.run_state import RunState, TrainingError
from trainer.signals import stop_on_signals
from trainer.training_loop import TrainingLoop
from trainer.transfer import G_FIELDS, finetune_recipe, freeze_as_in, load_source, start_from

log = logging.getLogger("trainer")


def class_labels(recipe: Recipe, images: np.ndarray, names: list[str] | None = None) -> tuple[np.ndarray | None, list[str]]:
    """Per-image classes from the recipe's class set, measured on the images themselves (the data has
    no labels); a resumed or fine-tuned run must keep its class names and their order."""
    if not recipe.classes:
        return None, []
    labels, found = CLASS_SETS[recipe.classes](images)
    if names and list(names) != list(found):
        raise TrainingError(f"the checkpoint's classes ({', '.join(names)}) are not class set "
                            f"{recipe.classes!r}'s ({', '.join(found)})")
    counts = np.bincount(labels, minlength=len(found))
    log.info("classes (%s): %s", recipe.classes, ", ".join(f"{n} {c}" for n, c in zip(found, counts)))
    return labels, found


def prepare(args: argparse.Namespace) -> tuple[Recipe, Path, dict | None, dict, Path, bool]:
    """(recipe, run folder, state to restore, data info, data path, weights only) from the options."""
    if args.resume:
        out = Path(args.resume)
        state = load_torch(out / "checkpoint.pt")
        recipe = recipe_from_args(args, Recipe.from_dict(state["recipe"]))
        run_options_from(args, state.get("options") or {})  # the run's own limits and timing, unless given again
        args.seed = state["seed"]
        return recipe, out, state, state["data"], Path(args.data or state["data"]["path"]), False
    if args.finetune:
        state = load_source(args.finetune)
        given = {f for f in G_FIELDS if getattr(args, f, None) is not None}
        recipe = recipe_from_args(args, finetune_recipe(state, args.recipe, given))
        if state.get("D") is not None and recipe.d_warmup_kimg and getattr(args, "d_warmup_kimg", None) is None:
            # The warm-up lets a D from zero learn before G follows it; a source's trained D needs none.
            log.info("D comes trained from %s: no D warm-up (was %g kimg)", args.finetune, recipe.d_warmup_kimg)
            recipe = dataclasses.replace(recipe, d_warmup_kimg=0.0)
        out = Path(args.out or f"runs/{recipe.name}-finetune")
    else:
        state = None
        recipe = recipe_from_args(args)
        out = Path(args.out or f"runs/{recipe.name}")
        if recipe.g_train != "all":
            raise TrainingError(f"recipe {recipe.name} trains only what a fine-tune adds to a trained generator: "
                                f"give --finetune GENERATOR.pth (or --g-train all)")
    if (out / "checkpoint.pt").exists():
        raise TrainingError(f"{out} already holds a run; use --resume {out} or another --out")
    data = Path(args.data)
    return recipe, out, state, {}, data, state is not None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, __doc__.split("\n\n")[0], __doc__.split("\n\n")[1])
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        use_nccl = torch.cuda.is_available() and args.device != "cpu"
        dist.init_process_group("nccl" if use_nccl else "gloo")
        if use_nccl:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        if dist.get_rank() != 0:
            logging.getLogger().setLevel(logging.WARNING)
    out = None
    made = False  # the run folder did not exist: a run refused before its first save leaves none behind
    try:
        recipe, out, state, data_info, data_path, weights_only = prepare(args)
        if not data_path.exists():
            raise TrainingError(f"no data at {data_path}: give --data a folder or .zip of face images (docs/data.md)")
        made = not out.exists()
        n_g, n_d = (parameter_count(generator_for(recipe)), parameter_count(discriminator_for(recipe, False)))
        check_writable(out, need_bytes=output_bytes(n_g, n_d, recipe.ema_kimg > 0, resume=bool(args.resume)))
        if not distributed or dist.get_rank() == 0:
            for p in remove_stale_temporaries(out):
                log.info("removed %s, left by an interrupted write", p)
        images, skipped = load_images(data_path, progress=not args.quiet)
        if skipped:
            log.warning("skipped %d unreadable image(s) in %s", skipped, data_path)
        if not data_info:
            data_info = {"path": str(data_path), "images": int(len(images)), "skipped": skipped,
                         "sha256": dataset_fingerprint(data_path)}
        log.info("data: %d images from %s (%d skipped)", len(images), data_path, skipped)
        if args.eval_every or args.eval_every_kimg:
            from metrics.fid import fit_protocol

            note = fit_protocol(len(images), args.eval_ref_n)[2]  # a reference too large fails now, not at the first evaluation
            if note:
                log.info("evaluations: %s", note)
        labels, names = class_labels(recipe, images, state.get("classes") if state else None)
        run = RunState(recipe, images, args, data_info, labels, names)
        if weights_only:
            log.info("fine-tuning from %s: %s", args.finetune, start_from(run, state))
        elif state is not None:
            run.load_state_dict(state)
            log.info("resumed %s at epoch %d, step %d", out, run.epoch, run.step)
            if recipe.g_train == "added" and getattr(args, "finetune", None):  # the same weights stay frozen
                freeze_as_in(run, load_source(args.finetune))
        # Fresh optimisers for trained networks: measure their moments first (not for a D from zero,
        # whose first gradients say nothing yet).
        if state is not None and (weights_only or state.get("opt_g") is None) and state.get("D") is not None:
            log.info("optimiser moments re-measured over %d steps (learning rate 0)", rewarm(run))
        loop = TrainingLoop(run, out)
        with stop_on_signals(run, enabled=not distributed):
            loop.run()
        return 128 + run.interrupted if run.interrupted else 0  # the shell's code for death by that signal
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if made and out is not None and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        return 2
    finally:
        if distributed:
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
