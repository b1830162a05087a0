"""Read a folder or a .zip of face images into one uint8 array [N, 64, 64, 3] (training and metrics)."""
from __future__ import annotations

import hashlib
import io
import logging
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from core.errors import UserError
from core.files import sha256_file

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
log = logging.getLogger(__name__)


class DataError(UserError):
    """The data set is missing, empty or unusable; the message names the path."""


def list_images(path: str | Path) -> list[str]:
    """Image member names (zip) or relative paths (folder), sorted by name.

    The sorted order is part of the FID protocol: reference images are picked from it by index.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"data set not found: {path}")
    if path.is_dir():
        names = [p.relative_to(path).as_posix() for p in path.rglob("*")
                 if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist()
                     if not n.endswith("/") and Path(n).suffix.lower() in IMAGE_EXTENSIONS
                     and not Path(n).name.startswith("._")]
    else:
        raise DataError(f"data set must be a folder or a .zip of images: {path}")
    if not names:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {path}")
    return sorted(names)


def to_64(img: Image.Image, size: int = 64) -> np.ndarray:
    """RGB, centre-cropped to a square and resized to size x size (only when needed)."""
    img = img.convert("RGB")
    w, h = img.size
    if w != h:
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        img = img.crop((left, top, left + s, top + s))
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.uint8)


def load_images(path: str | Path, names: list[str] | None = None, size: int = 64,
                progress: bool = False) -> tuple[np.ndarray, int]:
    """Decode images (all, or the given names) into [N, size, size, 3] uint8.

    Returns (images, skipped): unreadable files are skipped and counted, never fatal.
    """
    path = Path(path)
    names = list_images(path) if names is None else names
    out = np.empty((len(names), size, size, 3), dtype=np.uint8)
    n, skipped = 0, 0
    zf = zipfile.ZipFile(path) if path.is_file() else None
    try:
        it = names
        if progress:
            from tqdm import tqdm
            it = tqdm(names, desc=f"decoding {path.name}", unit="img", leave=False)
        for name in it:
            try:
                raw = zf.read(name) if zf else (path / name).read_bytes()
                with Image.open(io.BytesIO(raw)) as img:
                    out[n] = to_64(img, size)
                n += 1
            except Exception as exc:  # noqa: BLE001 - any decoder failure means "skip this file"
                skipped += 1
                log.warning("skipping unreadable image %s: %s", name, exc)
    finally:
        if zf:
            zf.close()
    if n == 0:
        raise DataError(f"none of the {len(names)} images in {path} could be read")
    return out[:n], skipped


def dataset_fingerprint(path: str | Path) -> str:
    """sha256 of a zip's bytes, or of a folder's image names and bytes: changes when the data do."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for name in list_images(path):
        h.update(name.encode() + b"\0" + (path / name).read_bytes())
    return h.hexdigest()


def data_record(info: dict) -> dict:
    """A data set as records name it (run cards, model metadata, model cards): its file name, size and
    content hash, never the path on the machine that used it."""
    info = dict(info or {})
    path = info.pop("path", None)
    name = info.pop("name", None) or (Path(str(path)).name if path else "")
    return {"name": name, **info}
