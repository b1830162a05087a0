"""Where a fine-tune starts: the networks of a published state, of a run's checkpoint, of a bare
Generator.pth, or of an exported NAME.onnx, loaded into the new run's networks (conditional ones included).

A state or a checkpoint brings G, D and the EMA; a Generator.pth (what every run writes, and all
that GPU sessions brought back of their runs) brings G only, and D starts from its initialisation.
So does a DCGAN .onnx from this project's export (trainer.from_onnx reads it back): the shipped
models in demo/models/ are ONNX files only, and this is how a clone without the GPU runs' folders
starts from the default (`--finetune demo/models/generator.onnx`).
An unconditional G fine-tuned with a conditional recipe gets its class inputs with weight zero
(trainer.networks.adopt_weights), so at step 0 it draws every class exactly as the source drew any
face: training only has to learn what the class changes, not faces again (the transfer StyleGAN-style
fine-tuning does, with the class as the one new input).
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from core.errors import UserError
from trainer.checkpoint import CheckpointError
from trainer.compact import load_state
from trainer.config import RECIPES, Recipe, get_recipe
from trainer.networks import adopt_weights

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
    from trainer.generator_io import load_generator

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

    from trainer.from_onnx import load_onnx_generator

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


def source_key(g, source_g: dict):
    """G's key -> the source's: the same key where the source has it, else the name the tensor has in
    the network without the class inputs G adds (its `unconditional_key`). So one rule serves an
    unconditional source and a conditional one that lacks only the class-conditional norms."""
    plain = getattr(g, "unconditional_key", None) or (lambda k: k)
    return lambda k: k if k in source_g else plain(k)


def train_only_added(g, source: dict, key) -> None:
    """Freeze every weight G had in the source: tensors the transfer made new (a conditional norm's
    per-class gain and bias) learn whole; a widened one (the first layer with its class channels)
    learns only its new part, the source's part getting a zero gradient (with Adam, a zero gradient
    moves nothing). BatchNorm statistics still follow the batches, as in any training step."""
    for name, p in g.named_parameters():
        src = source.get(key(name))
        if src is None or src.shape != p.shape and src.dim() != p.dim():
            continue  # new, or per-class from a per-channel tensor: learns whole
        if src.shape == p.shape:
            p.requires_grad_(False)
            continue
        axis = next(i for i in range(p.dim()) if p.shape[i] != src.shape[i])
        mask = torch.ones_like(p)
        mask.narrow(axis, 0, src.shape[axis]).zero_()
        p.register_hook(lambda grad, mask=mask: grad * mask)


def freeze_as_in(run, source: dict) -> None:
    """A resumed g_train='added' run freezes what its start froze."""
    train_only_added(run.g, source["G"], source_key(run.g, source["G"]))


def start_from(run, source: dict) -> str:
    """Load the source's networks into the run (a trainer.run_state.RunState); returns what was done,
    for the log. Counters, optimisers and random streams start anew."""
    key = source_key(run.g, source["G"])
    changed = adopt_weights(run.g, source["G"], key)
    widen = bool(changed)
    if run.r.g_train == "added":
        if not widen:
            raise CheckpointError("g_train='added' trains only the class inputs a fine-tune adds; this source "
                                  "and recipe add none (use --g-train all)")
        train_only_added(run.g, source["G"], key)
    elif run.r.g_train != "all":
        raise CheckpointError(f"g_train must be all or added, got {run.r.g_train!r}")
    if run.ema:
        adopt_weights(run.ema.module, source["EMA"] or source["G"], key)
    if source.get("D") is not None:
        d_changed = adopt_weights(run.d, source["D"], strict=False)
    else:
        d_changed = ["all (initialised)"]
    what = "G" + (f" with {len(run.class_names)} classes' inputs added, each starting as the source ({', '.join(changed)})"
                  if widen else "") + ("; only the class inputs learn" if run.r.g_train == "added" else "")
    return f"{what}; D: {'source' if not d_changed else ', '.join(d_changed)}"
