"""The trainer's command line: run options, and one flag for every recipe field."""
from __future__ import annotations

import argparse
import dataclasses

from trainer.config import RECIPES, Recipe, get_recipe


def parse_args(argv: list[str] | None = None, description: str | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trainer.train", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="folder or .zip of face images")
    p.add_argument("--recipe", default="best", choices=sorted(RECIPES), help="named recipe (default: best)")
    p.add_argument("--out", help="run folder (default: runs/<recipe>)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its checkpoint.pt")
    p.add_argument("--max-steps", type=int, help="stop after this many generator steps in total")
    p.add_argument("--max-minutes", type=float, help="stop after this much training time in total (all resumes)")
    p.add_argument("--seed", type=int, default=0, help="run seed: init, shuffling, noise (default 0)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--checkpoint-minutes", type=float, default=10.0,
                   help="write checkpoint, Generator.pth, samples and plots this often, and at the end (default 10)")
    p.add_argument("--log-every", type=int, default=10, help="read and log losses every N generator steps")
    p.add_argument("--eval-every", type=int, default=0,
                   help="FID every N epochs; keeps Generator-best.pth (default 0 = off)")
    p.add_argument("--eval-n", type=int, default=5000, help="generated images for --eval-every FID")
    p.add_argument("--eval-ref-n", type=int, default=10000, help="reference images for --eval-every FID")
    p.add_argument("--bf16", action="store_true", help="CUDA: bfloat16 autocast (spectral norm and penalties stay fp32)")
    p.add_argument("--channels-last", action="store_true", help="CUDA: channels_last memory format")
    p.add_argument("--compile", action="store_true", help="torch.compile G and D; falls back to eager if it fails")
    p.add_argument("--no-tf32", action="store_true", help="CUDA: disable TF32 matmuls/convolutions")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    g = p.add_argument_group("recipe overrides (default: the recipe's value)")
    for f in dataclasses.fields(Recipe):
        if f.name in ("name", "description", "source"):
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            g.add_argument(flag, type=_parse_bool, metavar="BOOL")
        elif "tuple" in str(f.type):
            g.add_argument(flag, type=_parse_pair, metavar="A,B")
        else:
            g.add_argument(flag, type={"int": int, "float": float, "str": str}[str(f.type)])
    p.add_argument("--lr", type=float, help="set both --lr-g and --lr-d")
    args = p.parse_args(argv)
    if not args.resume and not args.data:
        p.error("--data is required (or --resume DIR)")
    if args.log_every < 1:
        p.error("--log-every must be at least 1")
    return args


def _parse_bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s[:20]!r}")


def _parse_pair(s: str) -> tuple[float, float]:
    try:
        a, b = (float(x) for x in s.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers A,B, got {s[:40]!r}") from None
    return (a, b)


def recipe_from_args(args: argparse.Namespace, base: Recipe | None = None) -> Recipe:
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Recipe)
                 if f.name not in ("name", "description", "source") and getattr(args, f.name, None) is not None}
    if args.lr is not None:
        overrides.setdefault("lr_g", args.lr)
        overrides.setdefault("lr_d", args.lr)
    if base is not None:
        return dataclasses.replace(base, **overrides)
    return get_recipe(args.recipe, **overrides)
