"""Distil a trained generator into a narrower one that draws the same face for the same seed.

examples:
  python -m trainer.distill --teacher demo/models/generator.onnx --g-width 64 --out runs/edge-distill \\
      --kimg 400 --data data/anime-faces-64.zip --eval-every-kimg 200
  python -m trainer.distill --teacher demo/models/cgan.onnx --g-width 64 --out runs/cgan-distill
  python -m trainer.distill --resume runs/edge-distill          # continue where it stopped

No data and no discriminator: the student, a pruned copy of the teacher (trainer/pruning.py), learns
to draw what the teacher draws (pixel and per-layer feature L1). --data only measures FID during
the run. The run folder is a training run's, so export and scripts/ship_model.sh take it
(docs/distillation.md).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from core.errors import command
from trainer.distill.run import DistillOptions, Distillation, train
from trainer.run_files import job_folder, parameter_count, ready_folder
from trainer.run_state import pick_device
from trainer.signals import stop_on_signals

log = logging.getLogger("trainer")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trainer.distill", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    d = DistillOptions(teacher="")
    p.add_argument("--teacher", help="the trained generator: Generator.pth (generator.json beside it), its run folder, "
                                     "or an exported NAME.onnx (float32 or float16, as demo/models/ ships them)")
    p.add_argument("--resume", type=Path, help="a distillation's run folder: continue it")
    p.add_argument("--out", type=Path, help="run folder (default runs/distill-w<WIDTH>)")
    p.add_argument("--g-width", type=int, default=d.g_width, help=f"the student's width (default {d.g_width})")
    p.add_argument("--kimg", type=float, default=d.kimg, help=f"thousands of images in the run (default {d.kimg:g})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"(default {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"Adam's peak learning rate, cosine to 0 (default {d.lr:g})")
    p.add_argument("--feature-weight", type=float, default=d.feature_weight,
                   help=f"weight of the per-layer feature L1 beside the pixel L1 (default {d.feature_weight:g})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"training latents' seed (default {d.seed})")
    p.add_argument("--student", help="start from this student (a distillation's Generator.pth, its run folder, or a "
                                     "shipped NAME.onnx of --g-width) instead of the pruned copy of the teacher")
    p.add_argument("--adv-weight", type=float, default=d.adv_weight,
                   help="weight of a discriminator's term beside the L1s: a spectral-norm hinge D that tells the "
                        f"teacher's faces from the student's (default {d.adv_weight:g}: no discriminator; measured "
                        f"worse so far, docs/experiments.md)")
    p.add_argument("--d-width", type=int, default=d.d_width, help=f"that D's width (default {d.d_width})")
    p.add_argument("--lr-d", type=float, default=d.lr_d, help=f"that D's Adam learning rate (default {d.lr_d:g})")
    p.add_argument("--d-warmup-kimg", type=float, default=d.d_warmup_kimg,
                   help="thousands of images D learns before its term reaches the student (default 0)")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop (resumable) after this long (0: no limit)")
    p.add_argument("--data", help="real faces (folder or .zip): FID-5k during the run, nothing else")
    p.add_argument("--eval-every-kimg", type=float, default=0.0,
                   help="FID-5k every this many thousand images, and at the end (needs --data; 0: at the end only)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    a = p.parse_args(argv)
    if bool(a.teacher) == bool(a.resume):
        p.error("give --teacher GENERATOR.pth to start, or --resume RUN_DIR to continue")
    for name in ("g_width", "batch_size", "d_width"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if a.kimg <= 0 or a.lr <= 0 or a.lr_d <= 0:
        p.error("--kimg, --lr and --lr-d must be positive")
    if min(a.feature_weight, a.adv_weight, a.d_warmup_kimg, a.max_minutes, a.eval_every_kimg) < 0:
        p.error("--feature-weight, --adv-weight, --d-warmup-kimg, --max-minutes and --eval-every-kimg must not be negative")
    return a


@command
def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    device = pick_device(a.device)
    out, state = job_folder(a.resume, a.out or Path(f"runs/distill-w{a.g_width}"))
    if state is not None:
        cfg = DistillOptions(**{**state["settings"], "betas": tuple(state["settings"]["betas"])})
    else:
        cfg = DistillOptions(teacher=str(a.teacher), g_width=a.g_width, kimg=a.kimg, batch_size=a.batch_size,
                             lr=a.lr, feature_weight=a.feature_weight, seed=a.seed, student=a.student,
                             adv_weight=a.adv_weight, d_width=a.d_width, lr_d=a.lr_d, d_warmup_kimg=a.d_warmup_kimg)
    run = Distillation(cfg, device, state)  # first: a teacher or student it cannot read leaves no folder behind
    ready_folder(out, log)
    if state is not None:
        log.info("resumed %s at step %d (%d images)", out, run.step, run.images_seen)
    else:
        log.info("student: width %d, %d parameters, %s %s (%d)", cfg.g_width, parameter_count(run.student),
                 f"from {cfg.student}, teacher" if cfg.student else "pruned from", cfg.teacher,
                 parameter_count(run.teacher))
        if run.adversary:
            log.info("discriminator: width %d, %d parameters, weight %g", cfg.d_width,
                     parameter_count(run.adversary.d), cfg.adv_weight)
    with stop_on_signals(run):
        train(run, out, a.max_minutes, a.data, a.eval_every_kimg)
    if run.interrupted or run.images_seen < cfg.kimg * 1000:
        log.info("stopped at step %d; continue with: python -m trainer.distill --resume %s", run.step, out)
    else:
        log.info("done: %d steps, %.0f s; outputs in %s", run.step, run.seconds, out)
    return 128 + run.interrupted if run.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
