"""Atomic writes and safe loads of training files."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Write via `write(tmp_path)` to a temporary file beside `path`, fsync, then rename.

    A crash (even kill -9) leaves either the old file or the new one at `path`, never a torn one.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make shared run folders unreadable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_torch(obj: Any, path: str | Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_json(obj: Any, path: str | Path) -> None:
    def write(tmp: str) -> None:
        Path(tmp).write_text(json.dumps(obj, indent=2) + "\n")
    atomic_write(path, write)


class CheckpointError(ValueError):
    """A checkpoint or Generator.pth that cannot be used; the message says why."""


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
        first = text[:200] or type(exc).__name__
        if "Unsupported global" in text or "GLOBAL" in text or "not an allowed global" in text:
            raise CheckpointError(f"{path} is not a plain weights file (refused by torch.load(weights_only=True): {first})") from None
        raise CheckpointError(f"{path} is not a readable PyTorch file: {first}") from None
