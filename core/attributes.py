"""Plain image statistics of faces: the pseudo-labels behind steering directions, and the hair-colour
classes of the conditional GAN. The data set has no labels, so both are measured on the pixels.

Torch-free (numpy only): the trainer labels its training images with it, the metrics check the
class of generated faces with it, and export/directions.py fits steering directions to it.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from core.registry import Registry

HAIR = (slice(1, 17), slice(8, 56))           # the top of the face: mostly hair
CORNERS = [(slice(0, 8), slice(0, 8)), (slice(0, 8), slice(56, 64)), (slice(56, 64), slice(0, 8)),
           (slice(56, 64), slice(56, 64))]
FAMILIES = {"hair_blonde": 50.0, "hair_red": 5.0, "hair_blue": 220.0, "hair_pink": 325.0}  # hue centres, degrees


def hsv(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 [..., 3] -> hue in degrees, saturation and value in [0, 1]."""
    rgb = images.astype(np.float32) / 255
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx, mn = rgb.max(-1), rgb.min(-1)
    d = mx - mn
    safe = np.where(d > 1e-6, d, 1)
    h = np.where(mx == r, ((g - b) / safe) % 6, np.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4)) * 60
    return np.where(d > 1e-6, h, 0.0), np.where(mx > 0, d / np.maximum(mx, 1e-6), 0.0), mx


def measure_attributes(images: np.ndarray) -> dict[str, np.ndarray]:
    """Pseudo-labels of uint8 faces [N, 64, 64, 3]: one float per face and attribute."""
    h, s, v = hsv(images)
    hair = (slice(None), *HAIR)
    out = {}
    for name, centre in FAMILIES.items():
        # how much of the hair is vivid and of this hue: cos^4 keeps about +-35 degrees around the centre
        closeness = np.maximum(0, np.cos(np.radians(h[hair] - centre))) ** 4
        out[name] = (closeness * s[hair] * v[hair]).mean(axis=(1, 2))
    out["hair_dark"] = 1 - v[hair].mean(axis=(1, 2))
    lum = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255
    out["brightness"] = lum.mean(axis=(1, 2))
    out["background_light"] = np.mean([lum[:, a, b].mean(axis=(1, 2)) for a, b in CORNERS], axis=0)
    out["saturation"] = s.mean(axis=(1, 2))
    return out


# ----------------------------------------------------------------------------- classes

ClassSet = Callable[[np.ndarray], tuple[np.ndarray, list[str]]]   # uint8 faces -> (class per face, names)
CLASS_SETS: Registry[ClassSet] = Registry("class set")

HAIR_CLASSES = ["black", "white", "brown", "blonde", "red", "pink", "purple", "blue", "green", "other"]
# Hue bands of the vivid hair pixels, degrees: (name, from, to); red wraps around 0.
_BANDS = [("red", 345, 15), ("orange", 15, 40), ("yellow", 40, 70), ("green", 70, 165), ("blue", 165, 255),
          ("purple", 255, 290), ("pink", 290, 345)]


@CLASS_SETS.register("hair")
def hair_classes(images: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, list[str]]:
    """The hair colour family of each face, from the top rows of the face (mostly hair).

    Dark hair (median value < 0.38) is black; nearly grey and light hair (median saturation < 0.12,
    value > 0.65) is white (white, silver, grey); otherwise the hue band that holds the most vivid
    pixels (saturation > 0.25, value > 0.3), if it holds at least 30 % of the region: red splits into
    pink (light and soft), brown (dark) and red; orange into blonde (light) and brown; yellow is blonde;
    dark pink is purple. A face with no such band is black when darkish (median value < 0.5), else
    `other`: every image keeps a class, so the conditional GAN trains on all of them.
    Deterministic: the same images give the same classes.
    """
    labels = np.empty(len(images), np.int64)
    for i in range(0, len(images), chunk):
        labels[i:i + chunk] = _hair_chunk(images[i:i + chunk])
    return labels, list(HAIR_CLASSES)


def _hair_chunk(images: np.ndarray) -> np.ndarray:
    h, s, v = (a.reshape(len(images), -1) for a in hsv(images[:, HAIR[0], HAIR[1]]))
    v_med, s_med = np.median(v, axis=1), np.median(s, axis=1)
    vivid = (s > 0.25) & (v > 0.3)
    shares = np.stack([(vivid & (((h >= a) | (h < b)) if a > b else ((h >= a) & (h < b)))).mean(axis=1)
                       for _, a, b in _BANDS], axis=1)
    band = np.where(shares.max(axis=1) >= 0.3, shares.argmax(axis=1), -1)
    count = np.maximum(vivid.sum(axis=1), 1)
    v_viv, s_viv = (np.where(vivid, v, 0).sum(axis=1) / count, np.where(vivid, s, 0).sum(axis=1) / count)
    c = {name: i for i, name in enumerate(HAIR_CLASSES)}
    b = {name: i for i, (name, _, _) in enumerate(_BANDS)}
    out = np.where(v_med < 0.5, c["black"], c["other"])  # no dominant band
    rules = [  # first match wins, in this order
        (v_med < 0.38, c["black"]),
        ((s_med < 0.12) & (v_med > 0.65), c["white"]),
        ((band == b["red"]) & (v_viv >= 0.78) & (s_viv < 0.5), c["pink"]),
        ((band == b["red"]) & (v_viv < 0.6), c["brown"]),
        (band == b["red"], c["red"]),
        ((band == b["orange"]) & (v_viv >= 0.8), c["blonde"]),
        (band == b["orange"], c["brown"]),
        (band == b["yellow"], c["blonde"]),
        ((band == b["pink"]) & (v_viv < 0.55), c["purple"]),
        (band == b["pink"], c["pink"]),
        (band == b["purple"], c["purple"]),
        (band == b["blue"], c["blue"]),
        (band == b["green"], c["green"]),
    ]
    return np.select([cond for cond, _ in rules], [value for _, value in rules], default=out)
