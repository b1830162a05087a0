"""Train a GAN on 64x64 faces and write a run folder whose Generator.pth export and the app take.

examples:
  python -m trainer.train --data data/anime-faces-64.zip --recipe best --out runs/best
  python -m trainer.train --resume runs/best                          # continue where it stopped
  python -m trainer.train --data data/my_faces/ --recipe wgan-gp --g-width 64 --kimg 200
  python -m trainer.train --finetune demo/models/generator.onnx --data data/my_faces/ --out runs/mine
  python -m trainer.train --data data/faces.zip --out /content/drive/MyDrive/runs/best --time-limit 240
                                                   # run it again after a disconnect: it continues
  torchrun --nproc_per_node 2 -m trainer.train --data data/anime-faces-64.zip   # several GPUs

The command: the plan (trainer/options.py), data and run folder, then the loop (docs/training.md,
docs/long-runs.md).
"""
from __future__ import annotations

import logging
import os
import sys

import torch
import torch.distributed as dist

from core.errors import UserError
from networks import discriminator_for, generator_for
from trainer.data import load_data
from trainer.options import RunPlan, parse_args, plan
from trainer.run_files import check_writable, output_bytes, parameter_count, remove_stale_temporaries
from trainer.run_state import RunState
from trainer.signals import stop_on_signals
from trainer.step import rewarm
from trainer.training_loop import TrainingLoop

log = logging.getLogger("trainer")


def start(p: RunPlan, distributed: bool) -> RunState:
    """The run's state, ready to train: data loaded, networks restored (a continued run) or taken
    from a fine-tune's source, optimiser moments re-measured where the networks come trained."""
    recipe, options = p.recipe, p.options
    n_g, n_d = parameter_count(generator_for(recipe)), parameter_count(discriminator_for(recipe, False))
    check_writable(p.out, need_bytes=output_bytes(n_g, n_d, recipe.ema_kimg > 0, resume=p.data_info != {}))
    if not distributed or dist.get_rank() == 0:
        for path in remove_stale_temporaries(p.out):
            log.info("removed %s, left by an interrupted write", path)
    if options.eval_every or options.eval_every_kimg:
        from core.dataset import list_images
        from metrics.fid import fit_protocol

        note = fit_protocol(len(list_images(p.data)), options.eval_ref_n)[2]  # a reference too large fails now
        if note:
            log.info("evaluations: %s", note)
    names = p.state.get("classes") if p.state else None
    images, labels, names, info = load_data(p.data, recipe, p.data_info or None, names, progress=not options.quiet)
    run = RunState(recipe, options, images, info, labels, names)
    if p.weights_only:
        from trainer.finetune.transfer import start_from

        log.info("fine-tuning from %s: %s", options.finetune, start_from(run, p.state))
    elif p.state is not None:
        run.load_state_dict(p.state)
        log.info("resumed %s at epoch %d, step %d", p.out, run.epoch, run.step)
        if recipe.g_train == "added" and p.source is not None:  # the same weights stay frozen
            from trainer.finetune.transfer import freeze_as_in

            freeze_as_in(run, p.source)
    # Fresh optimisers for trained networks: measure their moments first (not for a D from zero,
    # whose first gradients say nothing yet).
    if p.state is not None and (p.weights_only or p.state.get("opt_g") is None) and p.state.get("D") is not None:
        log.info("optimiser moments re-measured over %d steps (learning rate 0)", rewarm(run))
    return run


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
    p, made = None, False  # a run refused before its first save leaves no folder behind
    try:
        p = plan(args)
        if not p.data.exists():
            raise UserError(f"data set not found: {p.data}: give --data a folder or .zip of face images (docs/data.md)")
        made = not p.out.exists()
        run = start(p, distributed)
        with stop_on_signals(run, enabled=not distributed):
            TrainingLoop(run, p.out).run()
        return 128 + run.interrupted if run.interrupted else 0  # the shell's code for death by that signal
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if made and p is not None and p.out.is_dir() and not any(p.out.iterdir()):
            p.out.rmdir()
        return 2
    finally:
        if distributed:
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
