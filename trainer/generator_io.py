"""Load a trained generator from Generator.pth + generator.json (used by export and evaluation)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from core.errors import shorten
from trainer.checkpoint import CheckpointError, load_torch
from trainer.networks import build_generator


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
    """generator.json beside the checkpoint (or the given file): what G's architecture is."""
    card_path = Path(card) if card else checkpoint.parent / "generator.json"
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
    g = build_generator(info["arch"])
    try:
        g.load_state_dict(state)  # float16 weights (as GPU sessions return them) are cast to float32 here
    except RuntimeError as exc:
        raise CheckpointError(f"{checkpoint} does not match the architecture in generator.json: "
                              f"{shorten(exc, 300)}") from None
    return g.eval(), info
