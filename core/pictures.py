"""A visitor's or a user's picture, read safely: a file size cap, image formats only, a pixel cap
checked before anything is decoded (a decompression bomb is a tiny file of enormous dimensions),
then RGB, centre-cropped and resized to the 64x64 faces the generators draw.

    face = read_face(Path("me.png"))          # uint8 [64, 64, 3]; UserError (one line) for anything else
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.dataset import to_64
from core.errors import UserError

MAX_BYTES = 2 * 2**20           # a face picture, even a large photo of one, is far smaller
MAX_PIXELS = 4096 * 4096        # width x height, checked from the header before decoding
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")


def read_face(source: str | Path | bytes, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The picture as a 64x64 face (uint8 [64, 64, 3]); UserError for a file that is too large, not an
    image, of another format, or of too many pixels."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise UserError(f"no picture at {path}")
        size = path.stat().st_size
        if size > max_bytes:
            raise UserError(f"the picture is {size / 2**20:.1f} MiB; at most {max_bytes / 2**20:g} MiB")
        data = path.read_bytes()
    else:
        data = bytes(source)
        if len(data) > max_bytes:
            raise UserError(f"the picture is {len(data) / 2**20:.1f} MiB; at most {max_bytes / 2**20:g} MiB")
    if not data:
        raise UserError("the picture is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))  # reads the header only
            if img.format not in FORMATS:
                raise UserError(f"the picture is {img.format}; take a {', '.join(FORMATS)} file")
            w, h = img.size
            if w * h > max_pixels or w < 1 or h < 1:
                raise UserError(f"the picture is {w}x{h} pixels; at most {max_pixels:,} pixels")
            img.seek(0)  # an animation: its first frame
            return to_64(img)
    except UserError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # Pillow's own cap, met in the header
        raise UserError(f"the picture has too many pixels; at most {max_pixels:,} pixels") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise UserError("the file is not a readable picture (PNG, JPEG, WebP, BMP or GIF)") from None
