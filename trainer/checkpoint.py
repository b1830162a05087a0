"""Atomic saves and safe loads of training files (torch.load only ever with weights_only=True)."""
from __future__ import annotations

import json
import re
import warnings
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
