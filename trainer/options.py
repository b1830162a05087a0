"""The trainer's command line: run options, one flag for every recipe field, and one for every
objective's hyperparameter (trainer/objectives.py declares them)."""
from __future__ import annotations

import argparse
import dataclasses
import typing

from core.errors import UserError
from trainer.config import RECIPES, Recipe, get_recipe
from trainer.objectives import OBJECTIVES, owner_of, parameter_fields
from trainer.run_state import RUN_OPTIONS

NOT_FLAGS = ("name", "description", "source", "loss_params", "schedule")
# Defaults of the run options; they stay None on the command line so a --resume can tell what was given.
RUN_DEFAULTS = {"checkpoint_minutes": 10.0, "log_every": 10, "eval_every": 0, "eval_every_kimg": 0.0, "kimg": None,
                "eval_n": 5000, "eval_ref_n": None,
                "bf16": False, "channels_last": False, "compile": False, "no_tf32": False,
                "max_steps": None, "max_minutes": None}


def _flag_type(tp: object) -> dict:
    """argparse settings for a dataclass field's (resolved) type."""
    if tp is bool:
        return {"type": _parse_bool, "metavar": "BOOL"}
    if typing.get_origin(tp) is tuple:
        return {"type": _parse_pair, "metavar": "A,B"}
    return {"type": tp}


def parse_args(argv: list[str] | None = None, description: str | None = None,
               epilog: str | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trainer.train", description=description, epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="folder or .zip of face images")
    p.add_argument("--recipe", choices=sorted(RECIPES),
                   help="named recipe (default: best; with --finetune, the source's own; a conditional recipe "
                        "adds class inputs to an unconditional source)")
    p.add_argument("--out", help="run folder (default: runs/<recipe>)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its checkpoint.pt (its options "
                                                  "and limits too, unless given again)")
    p.add_argument("--finetune", metavar="CHECKPOINT", help="start a new run from a published checkpoint's networks "
                                                            "and EMA (a folder or state file), a run's Generator.pth, "
                                                            "or an exported .onnx (demo/models/generator.onnx), on --data")
    p.add_argument("--max-steps", type=int, help="stop after this many generator steps in total")
    p.add_argument("--max-minutes", type=float, help="stop after this much training time in total (all resumes)")
    p.add_argument("--kimg", type=float, help="stop once D has seen this many thousand real images in total")
    p.add_argument("--seed", type=int, default=0, help="run seed: init, shuffling, noise (default 0)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--checkpoint-minutes", type=float,
                   help="write checkpoint, Generator.pth, samples and plots this often, and at the end (default 10)")
    p.add_argument("--log-every", type=int, help="read and log losses every N generator steps (default 10)")
    p.add_argument("--eval-every", type=int, help="FID every N epochs; keeps Generator-best.pth (default 0 = off)")
    p.add_argument("--eval-every-kimg", type=float, help="FID (with KID, precision/recall) every this many "
                                                          "thousand real images, and at the end (default 0 = off)")
    p.add_argument("--eval-n", type=int, help="generated images for --eval-every FID (default 5000)")
    p.add_argument("--eval-ref-n", type=int, help="reference images for --eval-every FID (default 10000, fewer for a small data set)")
    p.add_argument("--no-start-eval", action="store_true", help="with --finetune and --eval-every: do not measure "
                                                                "the starting point (already measured)")
    p.add_argument("--bf16", action="store_const", const=True, help="CUDA: bfloat16 autocast (spectral norm and "
                                                                     "penalties stay fp32)")
    p.add_argument("--channels-last", action="store_const", const=True, help="CUDA: channels_last memory format")
    p.add_argument("--compile", action="store_const", const=True, help="torch.compile G and D; falls back to eager "
                                                                        "if it fails")
    p.add_argument("--no-tf32", action="store_const", const=True, help="CUDA: disable TF32 matmuls/convolutions")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    g = p.add_argument_group("recipe overrides (default: the recipe's value)")
    types = typing.get_type_hints(Recipe)
    for f in dataclasses.fields(Recipe):
        if f.name not in NOT_FLAGS:
            g.add_argument("--" + f.name.replace("_", "-"), **_flag_type(types[f.name]))
    p.add_argument("--lr", type=float, help="set both --lr-g and --lr-d")
    lg = p.add_argument_group("loss parameters (each belongs to one loss; default: the recipe's value)")
    for name, tp in parameter_fields().items():
        lg.add_argument("--" + name.replace("_", "-"), help=f"loss {', '.join(owner_of(name))}", **_flag_type(tp))
    args = p.parse_args(argv)
    if not args.resume and not args.data:
        p.error("--data is required (or --resume DIR)")
    if args.resume and args.finetune:
        p.error("use --resume (continue a run) or --finetune (start one from a checkpoint), not both")
    if not args.resume:
        fill_run_defaults(args)
    if args.log_every is not None and args.log_every < 1:
        p.error("--log-every must be at least 1")
    return args


def fill_run_defaults(args: argparse.Namespace) -> None:
    for k, v in RUN_DEFAULTS.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)


def run_options_from(args: argparse.Namespace, saved: dict) -> None:
    """A resumed run keeps its own options (limits, timing, speed flags) unless given again."""
    for k in RUN_OPTIONS:
        if getattr(args, k, None) is None and saved.get(k) is not None:
            setattr(args, k, saved[k])
    fill_run_defaults(args)


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
                 if f.name not in NOT_FLAGS and getattr(args, f.name, None) is not None}
    if args.lr is not None:
        overrides.setdefault("lr_g", args.lr)
        overrides.setdefault("lr_d", args.lr)
    recipe = dataclasses.replace(base, **overrides) if base is not None else get_recipe(args.recipe or "best", **overrides)
    given = {k: getattr(args, k) for k in parameter_fields() if getattr(args, k, None) is not None}
    if given:
        theirs = [k for k in given if recipe.loss not in owner_of(k)]
        if theirs:
            raise UserError(f"--{theirs[0].replace('_', '-')} is a parameter of loss {', '.join(owner_of(theirs[0]))}, "
                            f"not of {recipe.loss}")
        recipe = dataclasses.replace(recipe, loss_params={**recipe.loss_params, **given})
    OBJECTIVES[recipe.loss].params(recipe.loss_params)  # unknown or mistyped parameters fail here, at start
    return recipe
