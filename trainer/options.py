"""The trainer's command line, and the one function that turns it into a run: `plan()` picks the base
recipe (a resumed run's, a fine-tune source's or a named one), applies the command line's overrides
once, and builds the typed RunOptions (trainer/config.py).

    args = parse_args(["--data", "faces/", "--recipe", "wgan-gp", "--lr", "2e-4"])
    p = plan(args)              # p.recipe, p.options, p.out, p.state (to restore), ...

Every recipe field is a flag (`--g-width`, ...), and so is every objective's hyperparameter
(trainer/objectives.py declares them: `--r1-gamma`, ...). Run options stay None when not given, so
a resumed run can tell what the command line changed.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import typing
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError
from networks.files import load_torch
from trainer.config import RECIPES, Recipe, RunOptions, get_recipe
from trainer.objectives import OBJECTIVES, owner_of, parameter_fields
from trainer.run_state import TrainingError

log = logging.getLogger("trainer")
NOT_FLAGS = ("name", "description", "source", "loss_params", "schedule")
PRECISIONS = ("auto", "bf16", "fp32")


@dataclass
class RunPlan:
    """What main() needs to start: the recipe and options, the run folder, the data, and the state
    to restore (a run to continue) or to start from (a fine-tune's source, weights_only=True)."""
    recipe: Recipe
    options: RunOptions
    out: Path
    data: Path
    data_info: dict            # a continued run's record of its data ({} for a new run: measured at load)
    state: dict | None = None
    weights_only: bool = False
    source: dict | None = None  # a fine-tune's source, also when a fine-tune is continued (frozen weights)


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
    p.add_argument("--out", help="run folder (default: runs/<recipe>); running the same command again continues it")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its checkpoint.pt (its options "
                                                  "and limits too, unless given again)")
    p.add_argument("--finetune", metavar="CHECKPOINT", help="start a new run from a published state's networks "
                                                            "(a folder or state file), a run's Generator.pth, "
                                                            "or an exported .onnx (demo/models/generator.onnx), on --data")
    p.add_argument("--max-steps", type=int, help="stop after this many generator steps in total")
    p.add_argument("--max-minutes", type=float, help="stop after this much training time in total (all resumes)")
    p.add_argument("--kimg", type=float, help="stop once D has seen this many thousand real images in total")
    p.add_argument("--time-limit", type=float, metavar="MINUTES",
                   help="this process's wall-clock limit, from its start: training stops early enough to save "
                        "(a notebook's session, a cluster job, a spot instance)")
    p.add_argument("--started-at", type=float, metavar="UNIX_SECONDS",
                   help="when --time-limit starts counting (default: this process's start; a job script can "
                        "pass its own, e.g. $(date +%%s) at its top)")
    p.add_argument("--seed", type=int, default=0, help="run seed: init, shuffling, noise (default 0)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--checkpoint-minutes", type=float,
                   help="write checkpoint, Generator.pth, samples and plots this often, and at the end (default 10)")
    p.add_argument("--log-every", type=int, help="read and log losses every N generator steps (default 10)")
    p.add_argument("--eval-every", type=int, help="FID every N epochs; keeps Generator-best.pth (default 0 = off)")
    p.add_argument("--eval-every-kimg", type=float, help="FID (with KID, precision/recall) every this many "
                                                          "thousand real images, and at the end (default 0 = off)")
    p.add_argument("--eval-n", type=int, help="generated images for the evaluations' FID (default 5000)")
    p.add_argument("--eval-ref-n", type=int, help="reference images for the evaluations' FID (default 10000, "
                                                  "fewer for a small data set)")
    p.add_argument("--no-start-eval", action="store_true", help="with --finetune and evaluations: do not measure "
                                                                "the starting point (already measured)")
    p.add_argument("--precision", choices=PRECISIONS, help="autocast: auto (bf16 where it is faster: CPUs with "
                                                           "avx512_bf16 or AMX, measured at start; fp32 elsewhere), "
                                                           "bf16 or fp32 (default auto)")
    p.add_argument("--bf16", dest="precision", action="store_const", const="bf16", help="the same as --precision bf16")
    p.add_argument("--channels-last", action="store_const", const=True, help="CUDA: channels_last memory format")
    p.add_argument("--compile", action="store_const", const=True, help="torch.compile G and D; falls back to eager "
                                                                        "if it fails")
    p.add_argument("--no-tf32", action="store_const", const=True, help="CUDA: disable TF32 matmuls/convolutions")
    p.add_argument("--early-checks", action="store_const", const=True,
                   help="at every save: roll back to the last good checkpoint and halve the learning rates when "
                        "losses are not finite, D wins every time, or faces repeat (docs/long-runs.md)")
    p.add_argument("--proxy", help="metrics/proxy.py file: the early checks also watch near-duplicates and the FID "
                                   "proxy (metrics/stats/proxy-anime-faces-64.pt for the anime faces)")
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
    if args.log_every is not None and args.log_every < 1:
        p.error("--log-every must be at least 1")
    if args.time_limit is not None and args.time_limit <= 0:
        p.error("--time-limit must be a positive number of minutes")
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


def with_overrides(base: Recipe, args: argparse.Namespace) -> Recipe:
    """The base recipe with the command line's recipe fields and loss parameters, checked."""
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Recipe)
                 if f.name not in NOT_FLAGS and getattr(args, f.name, None) is not None}
    if getattr(args, "lr", None) is not None:
        overrides.setdefault("lr_g", args.lr)
        overrides.setdefault("lr_d", args.lr)
    recipe = dataclasses.replace(base, **overrides)
    given = {k: getattr(args, k) for k in parameter_fields() if getattr(args, k, None) is not None}
    if given:
        theirs = [k for k in given if recipe.loss not in owner_of(k)]
        if theirs:
            raise UserError(f"--{theirs[0].replace('_', '-')} is a parameter of loss {', '.join(owner_of(theirs[0]))}, "
                            f"not of {recipe.loss}")
        recipe = dataclasses.replace(recipe, loss_params={**recipe.loss_params, **given})
    OBJECTIVES[recipe.loss].params(recipe.loss_params)  # unknown or mistyped parameters fail here, at start
    return recipe


def options_from(args: argparse.Namespace, saved: dict | None = None) -> RunOptions:
    """RunOptions: the defaults, then a resumed run's saved options, then what the command line gives."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunOptions)
             if getattr(args, f.name, None) is not None}
    return RunOptions(**{**RunOptions.from_saved(saved or {}), **given})


def new_recipe(args: argparse.Namespace) -> tuple[Recipe, dict | None]:
    """(the recipe a new run of these arguments trains, the fine-tune source it starts from, if any):
    the named recipe, or the source's own, with the command line's overrides applied once."""
    base, source = _base_recipe(args)
    return with_overrides(base, args), source


def _base_recipe(args: argparse.Namespace) -> tuple[Recipe, dict | None]:
    if not args.finetune:
        return get_recipe(args.recipe or "best"), None
    from trainer.finetune.sources import G_FIELDS, finetune_recipe, load_source

    source = load_source(args.finetune)
    base = finetune_recipe(source, args.recipe, {f for f in G_FIELDS if getattr(args, f, None) is not None})
    if source.get("D") is not None and base.d_warmup_kimg and getattr(args, "d_warmup_kimg", None) is None:
        # The warm-up lets a D from zero learn before G follows it; a source's trained D needs none.
        log.info("D comes trained from %s: no D warm-up (was %g kimg)", args.finetune, base.d_warmup_kimg)
        base = dataclasses.replace(base, d_warmup_kimg=0.0)
    return base, source


def plan(args: argparse.Namespace) -> RunPlan:
    """The run the command line asks for: continued (--resume DIR, or --out of a run made by the same
    command), fine-tuned (--finetune) or new."""
    if args.resume:
        out = Path(args.resume)
        state = load_torch(out / "checkpoint.pt")
        recipe = with_overrides(Recipe.from_dict(state["recipe"]), args)
        return _continued(args, out, state, recipe)
    recipe, source = new_recipe(args)
    out = Path(args.out or (f"runs/{recipe.name}-finetune" if args.finetune else f"runs/{recipe.name}"))
    if (out / "checkpoint.pt").exists():
        # Running the same command again (after a disconnect, a time limit, a preempted job) continues it.
        state = load_torch(out / "checkpoint.pt")
        if Recipe.from_dict(state["recipe"]).to_dict() != recipe.to_dict():
            theirs = Recipe.from_dict(state["recipe"]).to_dict()
            differ = next(k for k, v in recipe.to_dict().items() if theirs.get(k) != v)
            raise TrainingError(f"{out} already holds a run of another recipe ({differ} {theirs.get(differ)!r} there, "
                                f"{recipe.to_dict()[differ]!r} here): continue it with --resume {out}, or use another --out")
        log.info("%s holds a run of this command: continuing it", out)
        return _continued(args, out, state, recipe, source)
    if recipe.g_train != "all" and source is None:
        raise TrainingError(f"recipe {recipe.name} trains only what a fine-tune adds to a trained generator: "
                            f"give --finetune GENERATOR.pth (or --g-train all)")
    options = options_from(args)
    return RunPlan(recipe, options, out, Path(args.data), {}, source, weights_only=source is not None, source=source)


def _continued(args, out: Path, state: dict, recipe: Recipe, source: dict | None = None) -> RunPlan:
    """A run to continue: its own options and seed unless given again, its data unless --data moves it."""
    options = options_from(args, state.get("options"))
    options.seed = state["seed"]
    if source is None and recipe.g_train == "added" and options.finetune:  # the same weights stay frozen
        from trainer.finetune.sources import load_source

        source = load_source(options.finetune)
    return RunPlan(recipe, options, out, Path(args.data or state["data"]["path"]), state["data"], state, source=source)
