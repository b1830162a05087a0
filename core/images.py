"""Pixels -> pictures: uint8 conversion, grids, enlargements, PNG files and animations."""
from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from core.errors import UserError
from core.files import atomic_write
from core.limits import GRID_PAD


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[B, 3, H, W] in [-1, 1] -> [B, H, W, 3] uint8 (the rounding every part of the project uses)."""
    x = (np.clip(images, -1.0, 1.0) + 1.0) * 127.5
    return np.rint(x).astype(np.uint8).transpose(0, 2, 3, 1)


def make_grid(images: np.ndarray, cols: int, pad: int = GRID_PAD, fill: int = 255) -> np.ndarray:
    """[B, H, W, C] -> one picture, row by row, `pad` pixels of `fill` between and around cells."""
    b, h, w, c = images.shape
    rows = -(-b // cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), fill, dtype=np.uint8)
    for i, img in enumerate(images):
        r, k = divmod(i, cols)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + k * (w + pad):pad + k * (w + pad) + w] = img
    return grid


def upscale(img: Image.Image, factor: int) -> Image.Image:
    """Pixel-crisp enlargement for viewing (nearest neighbour: no invented detail)."""
    return img if factor == 1 else img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)


def seed_filename(seed: int) -> str:
    return f"seed_{seed:010d}.png"


def digest(img: np.ndarray) -> bytes:
    """A pixel hash: equal for identical images, different otherwise (for practical purposes)."""
    return hashlib.sha1(np.ascontiguousarray(img).tobytes()).digest()


def distinct(images: Iterable[np.ndarray]) -> int:
    return len({digest(img) for img in images})


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_batch(images: np.ndarray) -> list[bytes]:
    """Ordinary 8-bit RGB PNG files for uint8 images [b, h, w, 3], written with zlib directly.

    Pillow spends most of its PNG time choosing a filter for every row. For these small, noisy
    faces the "Up" filter on every row with Huffman-only deflate gives files of the same size
    (about 9 KiB) in a third of the time, which keeps a 1,000-face zip close to the bare
    generation time. The filter runs on the whole batch at once.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise UserError(f"PNG encoding needs uint8 images [b, h, w, 3], got {images.dtype} {list(images.shape)}")
    b, h, w, c = images.shape
    rows = images.reshape(b, h, w * c)
    filtered = np.empty((b, h, w * c + 1), np.uint8)
    filtered[:, :, 0] = 2  # filter type Up: each byte minus the one above it (the row above row 0 is zeros)
    filtered[:, 0, 1:] = rows[:, 0]
    np.subtract(rows[:, 1:], rows[:, :-1], out=filtered[:, 1:, 1:])  # uint8 wraps modulo 256, as PNG defines
    head = _PNG_SIGNATURE + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    tail = _png_chunk(b"IEND", b"")
    out = []
    for f in filtered:
        z = zlib.compressobj(6, zlib.DEFLATED, 15, 9, zlib.Z_HUFFMAN_ONLY)
        out.append(head + _png_chunk(b"IDAT", z.compress(f.tobytes()) + z.flush()) + tail)
    return out


def save_png(img: Image.Image, out: str | Path) -> Path:
    """A PNG written atomically: a failure leaves the old file or none."""
    return atomic_write(out, lambda tmp: img.save(tmp, format="PNG"))


ANIMATION_FORMATS = {".gif": "GIF", ".webp": "WEBP"}


def save_animation(frames: Sequence[np.ndarray], out: str | Path, fps: int = 12, scale: int = 2) -> Path:
    """Animated GIF or WebP (by suffix) from uint8 frames [h, w, 3], looping forever; written atomically.

    Frames are enlarged one at a time as the encoder asks for them, so only the encoder's own copy
    of the animation is held in memory.
    """
    out = Path(out)
    fmt = ANIMATION_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise UserError(f"animation must be .gif or .webp, got {out.suffix or 'no suffix'}")
    if len(frames) == 0:
        raise UserError("an animation needs at least one frame")

    def pictures():
        for f in frames[1:]:
            yield upscale(Image.fromarray(f), scale)

    def write(tmp: str) -> None:
        kwargs = {"lossless": True} if fmt == "WEBP" else {"optimize": False}
        upscale(Image.fromarray(frames[0]), scale).save(tmp, format=fmt, save_all=True, append_images=pictures(),
                                                        duration=int(1000 / fps), loop=0, **kwargs)
    return atomic_write(out, write)
