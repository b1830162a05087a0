"""Atomic file writes and file hashes: one implementation for every writer in the project."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable

from core.errors import UserError


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | Path, write: Callable[[str], None], make_parents: bool = False) -> Path:
    """Write via `write(tmp_path)` to a uniquely named temporary file beside `path`, fsync, rename.

    A crash (even kill -9) leaves the old file or the new one at `path`, never a torn one; two
    writers never share a temporary file. The file gets the usual permissions (0666 less the umask),
    not mkstemp's 0600, so shared run folders and served files stay readable. A path that exists and
    is not a regular file (/dev/null, a pipe) is written in place: renaming over it would replace it.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a file")
    if path.exists() and not path.is_file():  # /dev/null, a pipe: write into it; renaming over it would replace it
        write(str(path))
        return path
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes, make_parents: bool = False) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), make_parents)


def atomic_write_text(path: str | Path, text: str, make_parents: bool = False) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text), make_parents)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
