"""Train an encoder that finds a face in a generator's space: picture -> latent (and class).

examples:
  python -m trainer.encoder --generator demo/models/generator.onnx --out runs/encoder-generator
  python -m trainer.encoder --resume runs/encoder-generator           # continue where it stopped
  python -m export.encoder --run runs/encoder-generator --out demo/models/generator.encoder.onnx

It learns from the generator's own faces (no data needed): train it from the very file you ship,
so the runtime knows the encoder belongs to that model (docs/inversion.md).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from core.errors import command
from trainer.encoder.run import EncoderOptions, EncoderRun, train
from trainer.run_files import job_folder, parameter_count, ready_folder
from trainer.run_state import pick_device
from trainer.signals import stop_on_signals

log = logging.getLogger("trainer")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    d = EncoderOptions(generator="")
    p = argparse.ArgumentParser(prog="python -m trainer.encoder", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", help="the generator: a shipped NAME.onnx (float32 or float16) or a run's Generator.pth")
    p.add_argument("--resume", type=Path, help="an encoder's run folder: continue it")
    p.add_argument("--out", type=Path, help="run folder (default runs/encoder-<generator name>)")
    p.add_argument("--kimg", type=float, default=d.kimg, help=f"thousands of faces in the run (default {d.kimg:g})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"(default {d.batch_size})")
    p.add_argument("--image-share", type=float, default=d.image_share,
                   help=f"part of each batch that also gets the image loss, 0 to 1 (default {d.image_share:g})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"Adam's peak learning rate, cosine to 0 (default {d.lr:g})")
    p.add_argument("--width", type=int, default=d.width, help=f"the encoder's width (default {d.width})")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--time-limit", type=float, default=0.0, metavar="MINUTES",
                   help="this process's wall-clock limit: save and stop (resumable) after this long (default: none)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    a = p.parse_args(argv)
    if bool(a.generator) == bool(a.resume):
        p.error("give --generator FILE to start, or --resume RUN_DIR to continue")
    if a.kimg <= 0 or a.lr <= 0 or a.batch_size < 1 or a.width < 1 or not 0 <= a.image_share <= 1:
        p.error("--kimg, --lr, --batch-size and --width must be positive, --image-share from 0 to 1")
    return a


@command
def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    device = pick_device(a.device)
    out, state = job_folder(a.resume, a.out or Path(f"runs/encoder-{Path(a.generator or '').stem}"))
    cfg = EncoderOptions(**state["options"]) if state is not None else EncoderOptions(
        generator=str(a.generator), kimg=a.kimg, batch_size=a.batch_size, image_share=a.image_share, lr=a.lr,
        width=a.width, seed=a.seed)
    run = EncoderRun(cfg, device, state)  # first: a generator it cannot read leaves no folder behind
    ready_folder(out, log)
    log.info("encoder for %s: %d parameters, %s", cfg.generator, parameter_count(run.e),
             f"resumed at {run.images_seen} faces" if state else "from its initialisation")
    with stop_on_signals(run):
        held_out = train(run, out, a.time_limit)
    done = run.images_seen >= cfg.kimg * 1000
    log.info("%s: %d faces, %.0f s; held out: %s; %s", "done" if done else "stopped", run.images_seen, run.seconds,
             held_out, f"export with: python -m export.encoder --run {out}" if done else
             f"continue with: python -m trainer.encoder --resume {out}")
    return 128 + run.interrupted if run.interrupted else 0

if __name__ == "__main__":
    sys.exit(main())
