"""Atomic saves and safe loads of training files (torch.load only ever with weights_only=True)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

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
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one clear line
        text = " ".join(str(exc).split())
        detail = shorten(text, 200) if text else type(exc).__name__
        if "Unsupported global" in text or "GLOBAL" in text or "not an allowed global" in text:
            raise CheckpointError(f"{path} is not a plain weights file (refused by torch.load(weights_only=True): "
                                  f"{detail})") from None
        raise CheckpointError(f"{path} is not a readable PyTorch file (truncated or damaged?): {detail}") from None
