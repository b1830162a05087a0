"""What a fine-tune starts from: a published compact state, a run's checkpoint, a bare
Generator.pth, or an exported NAME.onnx from this project, read as one state dict; and the run's
base recipe from it.

    source = load_source("demo/models/generator.onnx")      # {"G": ..., "D": None, "recipe": {...}, ...}
    recipe = finetune_recipe(source, "cgan-transfer", given=set())

A state or a checkpoint brings G, D and the EMA; a Generator.pth or an .onnx brings G only (D starts
from its initialisation). The shipped models keep only their ONNX files, so `--finetune
demo/models/generator.onnx` is how a clone starts from the default.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from core.errors import UserError
from networks.files import CheckpointError, load_generator
from trainer.config import RECIPES, Recipe, get_recipe
from trainer.publish.compact import load_state

log = logging.getLogger("trainer")

# Recipe fields that shape G: a fine-tune takes them from its source unless the command line gives
# them (the weights only fit the architecture they were trained in).
G_FIELDS = ("g_arch", "z_dim", "g_width", "g_norm", "attention")


def is_generator_file(path: Path) -> bool:
    """A Generator.pth, or a folder that holds one and no resumable state."""
    if path.is_dir():
        return (path / "Generator.pth").is_file() and not any(
            (path / name).is_file() for name in ("state.json", "checkpoint.pt"))
    return path.suffix == ".pth"


def load_source(path: str | Path) -> dict:
    """What a fine-tune starts from, as a state dict: G, D (None for a Generator.pth), EMA (None: it
    starts at G), the source's recipe and classes."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"nothing to fine-tune from at {path}")
    if path.suffix == ".onnx":
        return onnx_source(path)
    if not is_generator_file(path):
        return load_state(path)
    g, card = load_generator(path)
    if not isinstance(card.get("recipe"), dict):
        raise CheckpointError(f"the generator.json beside {path} has no recipe")
    return {"G": g.state_dict(), "D": None, "EMA": None, "recipe": card["recipe"],
            "classes": list(card.get("classes") or []), "generator_only": True}


def onnx_source(path: Path) -> dict:
    """An exported DCGAN generator as a fine-tune's source: G only. Its recipe is the one its menu
    card (NAME.json beside it) or its metadata names, with G's architecture from the file; a recipe
    that is not a training one (a distillation's) leaves the choice to --recipe."""
    import json

    from trainer.finetune.from_onnx import load_onnx_generator

    try:
        g, card = load_onnx_generator(path)
    except UserError as exc:
        raise CheckpointError(str(exc)) from None
    menu = path.with_suffix(".json")
    recipe = card["recipe"]
    if menu.is_file():
        try:
            recipe = json.loads(menu.read_text()).get("recipe") or recipe
        except ValueError:
            pass  # a broken menu card: the file's own metadata still names the recipe
    arch = card["arch"]
    base = (dataclasses.asdict(get_recipe(recipe["name"])) if recipe.get("name") in RECIPES else {}) | recipe
    base |= {"g_arch": arch["name"], "z_dim": int(arch["z_dim"]), "g_width": int(arch["g_width"])}
    return {"G": g.state_dict(), "D": None, "EMA": None, "recipe": base, "classes": list(card.get("classes") or []),
            "generator_only": True, "recipe_unknown": recipe.get("name") not in RECIPES}


def finetune_recipe(source: dict, recipe_name: str | None, given: set[str]) -> Recipe:
    """The run's base recipe: the named one (with the source's G architecture where the command line
    does not set it), or the source's own."""
    if source.get("recipe_unknown") and recipe_name is None:
        raise CheckpointError(f"the source was made by '{source['recipe'].get('name')}', not a training recipe: "
                              f"name one with --recipe (best, for the default's)")
    own = Recipe.from_dict(source["recipe"])
    if recipe_name is None:
        return own
    recipe = get_recipe(recipe_name)
    keep = {f: getattr(own, f) for f in G_FIELDS if f not in given}
    if source.get("classes") and not recipe.classes:
        raise CheckpointError("the source generator is conditional; fine-tune it with a conditional recipe")
    if own.g_class_norm and "g_class_norm" not in given:  # its per-class norms fit no plain BatchNorm
        keep["g_class_norm"] = True
    return dataclasses.replace(recipe, **keep)


def load_generator_source(path: str | Path):
    """A trained generator as a torch module in eval mode, with its card: a run's Generator.pth (or its
    folder), or a float32 or float16 NAME.onnx from this project's export (read back and checked by
    from_onnx.py), as the shipped models keep only their ONNX files. For distillation and encoders."""
    if str(path).endswith(".onnx"):
        from trainer.finetune.from_onnx import load_onnx_generator

        return load_onnx_generator(path)
    return load_generator(path)

