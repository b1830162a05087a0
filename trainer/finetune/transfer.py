"""A fine-tune's source loaded into the new run's networks: the same weights where the networks
agree, class inputs added with weight zero where a conditional recipe adds them (so at step 0 the new
G draws every class exactly as the source drew any face), and with g_train="added" only what the
fine-tune added learns.

    report = start_from(run, load_source(path))      # run: a trainer.run_state.RunState
"""
from __future__ import annotations

import torch

from networks import adopt_weights
from networks.files import CheckpointError


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
    if run.recipe.g_train == "added":
        if not widen:
            raise CheckpointError("g_train='added' trains only the class inputs a fine-tune adds; this source "
                                  "and recipe add none (use --g-train all)")
        train_only_added(run.g, source["G"], key)
    elif run.recipe.g_train != "all":
        raise CheckpointError(f"g_train must be all or added, got {run.recipe.g_train!r}")
    if run.ema:
        adopt_weights(run.ema.module, source["EMA"] or source["G"], key)
    if source.get("D") is not None:
        d_changed = adopt_weights(run.d, source["D"], strict=False)
    else:
        d_changed = ["all (initialised)"]
    what = "G" + (f" with {len(run.class_names)} classes' inputs added, each starting as the source ({', '.join(changed)})"
                  if widen else "") + ("; only the class inputs learn" if run.recipe.g_train == "added" else "")
    return f"{what}; D: {'source' if not d_changed else ', '.join(d_changed)}"
