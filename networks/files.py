"""Torch files, safely: atomic saves, loads only ever with weights_only=True, and a run's
Generator.pth with its generator.json (what export, evaluation, fine-tunes and distillation read).

    g, card = load_generator("runs/best")            # a run folder, its Generator.pth, or None: the newest
    state = load_torch("runs/best/checkpoint.pt")    # one clear CheckpointError for anything unusable
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.errors import UserError, shorten
from core.files import atomic_write, atomic_write_text


class CheckpointError(UserError):
    """A checkpoint or Generator.pth that cannot be used; the message says why."""


def save_torch(obj: Any, path: str | Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_json(obj: Any, path: str | Path) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def load_torch(path: str | Path) -> Any:
    """torch.load with weights_only=True, always: a pickle that would run code is refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"file not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"file is empty: {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK") or head.startswith(b"\x80")):  # torch's zip format, or a legacy pickle
        raise CheckpointError(f"{path} is not a readable PyTorch file (neither a torch zip archive nor a pickle)")
    try:
        with warnings.catch_warnings():  # torch warns about a pickle protocol before it refuses the file
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one clear line
        raise CheckpointError(_why(path, exc, head)) from None


def _why(path: Path, exc: Exception, head: bytes) -> str:
    """One line on why torch.load(weights_only=True) refused a file, without torch's own advice (which
    suggests weights_only=False: exactly what must never be done with a file from elsewhere)."""
    text = " ".join(str(exc).split())
    named = re.search(r"(?:unsupported GLOBAL|Unsupported global:?) ([\w.]+)", text)
    if named:
        return (f"{path} is not a plain weights file (refused by torch.load(weights_only=True): it would load "
                f"{named.group(1)}, which could run code)")
    if "Unsupported operand" in text or (head.startswith(b"\x80") and "WeightsUnpickler" in text):
        return f"{path} is a raw pickle, not a PyTorch weights file (refused: a pickle can run code)"
    detail = re.sub(r"Weights only load failed\..*?use case:", "", text)  # keep the cause, drop the advice
    detail = re.sub(r"Check the documentation of torch.load.*", "", detail).strip() or type(exc).__name__
    return f"{path} is not a readable PyTorch file (truncated or damaged?): {shorten(detail, 200)}"


def find_checkpoint(path: str | Path | None, runs_dir: str | Path = "runs") -> Path:
    """A Generator.pth from a file, a run folder, or (None) the newest one the trainer wrote: a run
    under runs/ (`python -m trainer.train` writes runs/<recipe>/Generator.pth) or ./Generator.pth."""
    if path is None:
        found = [p for p in (*Path(runs_dir).glob("*/Generator.pth"), Path("Generator.pth")) if p.is_file()]
        if not found:
            raise CheckpointError(f"no checkpoint given and none found ({runs_dir}/*/Generator.pth or ./Generator.pth): "
                                  f"train one with `python -m trainer.train --data FACES`, or pass --checkpoint PATH")
        return max(found, key=lambda p: p.stat().st_mtime)
    path = Path(path)
    return path / "Generator.pth" if path.is_dir() else path


def read_card(checkpoint: Path, card: str | Path | None = None) -> dict:
    """The checkpoint's card (or the given file): what G's architecture is, and what trained it.
    Generator-best.pth's own card is generator-best.json beside it; any other's is generator.json."""
    own = checkpoint.with_name(checkpoint.stem.lower() + ".json")
    card_path = Path(card) if card else own if own.is_file() else checkpoint.parent / "generator.json"
    if not card_path.is_file():
        raise CheckpointError(f"architecture file not found: {card_path} (the run folder's generator.json "
                              f"must sit beside {checkpoint.name})")
    try:
        info = json.loads(card_path.read_text())
        info["arch"]["z_dim"]  # what every generator has; the rest is its own architecture's business
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{card_path} is not a generator.json ({shorten(exc, 80)})") from None
    return info


def load_generator(checkpoint: str | Path | None, card: str | Path | None = None) -> tuple[nn.Module, dict]:
    """(G in eval mode on the CPU, generator.json as a dict); clear CheckpointError on any mismatch."""
    checkpoint = find_checkpoint(checkpoint)
    info = read_card(checkpoint, card)
    state = load_torch(checkpoint)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{checkpoint} is not a generator state_dict")
    from networks import build_generator  # the registry of architectures, this package's __init__

    g = build_generator(info["arch"])
    try:
        g.load_state_dict(state)  # float16 weights (as GPU sessions return them) are cast to float32 here
    except RuntimeError as exc:
        raise CheckpointError(f"{checkpoint} does not match the architecture in generator.json: "
                              f"{shorten(exc, 300)}") from None
    return g.eval(), info


def load_encoder(run: str | Path) -> tuple[nn.Module, dict]:
    """(an inversion encoder in eval mode on the CPU, its encoder.json) from an encoder's run folder
    (python -m trainer.encoder) or its Encoder.pth."""
    from networks.encoder import Encoder

    path = Path(run)
    path = path / "Encoder.pth" if path.is_dir() else path
    card_path = path.parent / "encoder.json"
    if not card_path.is_file():
        raise CheckpointError(f"no encoder.json beside {path} (an encoder's run folder holds both)")
    try:
        card = json.loads(card_path.read_text())
        e = Encoder.from_arch(card["arch"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{card_path} is not an encoder.json ({shorten(exc, 80)})") from None
    try:
        e.load_state_dict(load_torch(path))
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not match the encoder in encoder.json: {shorten(exc, 200)}") from None
    return e.eval(), card


def recipe_text(card: dict) -> str:
    """A run card's recipe description, followed by the settings the run changed from the recipe it
    is named after (card["recipe_changes"], {setting: [recipe's, run's]}, written by the trainer),
    so that a card never states the named recipe's settings for a run that trained with others."""
    text = str(card.get("recipe", {}).get("description", ""))
    changes = card.get("recipe_changes") or {}
    if not changes:
        return text
    show = lambda v: f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
    listed = ", ".join(f"{k} {show(new)} (recipe: {show(old)})" for k, (old, new) in changes.items())
    return f"{text} Changed in this run: {listed}."
