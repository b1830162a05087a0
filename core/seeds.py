"""Seeds -> latents: the project's one latent rule, and the parsers for seeds, seed lists and psi.

Seed 42 is the same face everywhere because every caller (trainer samples, export parity, metrics,
runtime, CLI, app, the browser page) gets its z from `latents()` here.
"""
from __future__ import annotations

import math
import re
from typing import Iterable, Sequence

import numpy as np

from core.errors import UserError, quote
from core.limits import LIMITS

MAX_SEED = LIMITS.max_seed
LATENT_RULE = "numpy RandomState(seed).randn(z_dim) as float32, times psi (1 = no truncation)"

# Every fixed set of seeds the project uses, in one table. The first is the faces people see first:
# training samples (0-63), export parity (0-255), FID-5k (0-4999), duplicates and per-class figures
# (0-999) all draw from it on purpose. The others are internal and must never meet it or each other
# (tests/test_core.py checks): measuring a model on the seeds it was calibrated on would flatter it.
SEED_RANGES = {
    "faces people see first: samples, parity, metrics": range(0, 10_000),
    "int8 calibration": range(100_000, 100_512),
    "BatchNorm recalibration": range(1_000_000, 1_000_000 + 64 * 256),
    "steering: fitting the directions": range(2_000_000, 2_100_000),   # --samples up to 100,000
    "steering: measuring their effects": range(3_000_000, 3_000_256),
    "distillation: ranking the teacher's channels": range(4_000_000, 4_004_096),
    "inversion: faces an encoder never trained on": range(5_000_000, 5_010_000),
}


def seed_range(name: str, n: int | None = None) -> range:
    """The first n seeds (all of them by default) of one of SEED_RANGES, by the start of its name."""
    (key,) = [k for k in SEED_RANGES if k.startswith(name)]
    r = SEED_RANGES[key]
    if n is not None and n > len(r):
        raise UserError(f"{n} seeds asked for {key}, which has {len(r)}")
    return r if n is None else range(r.start, r.start + n)


def check_int(value: object, name: str, lo: int, hi: int) -> int:
    """A whole number in [lo, hi] from an int, an integral float or a digit string; else UserError
    naming the field. Booleans are refused: True is not a seed."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise UserError(f"{name} is empty; enter a whole number from {lo} to {hi}")
    if isinstance(value, bool):
        raise UserError(f"{name} must be a whole number from {lo} to {hi}, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"[+-]?\d{1,30}(\.0*)?", text):
            raise UserError(f"{name} must be a whole number from {lo} to {hi}, got {quote(value)}")
        value = int(text.split(".")[0])
    elif isinstance(value, (float, np.floating)):
        if not math.isfinite(value) or value != int(value):
            raise UserError(f"{name} must be a whole number from {lo} to {hi}, got {quote(value)}")
        value = int(value)
    elif not isinstance(value, (int, np.integer)):
        raise UserError(f"{name} must be a whole number from {lo} to {hi}, got {type(value).__name__}")
    if not lo <= int(value) <= hi:
        raise UserError(f"{name} must be from {lo} to {hi}, got {quote(int(value))}")
    return int(value)


def check_seed(value: object, name: str = "seed") -> int:
    """An integer seed in [0, 2^32 - 1]."""
    return check_int(value, name, 0, MAX_SEED)


def check_span(start: int, count: int, name: str = "start seed") -> None:
    """`count` consecutive seeds from `start` must stay within 0..2^32-1."""
    if start + count - 1 > MAX_SEED:
        raise UserError(f"{name} too large: {count} seeds from {start} would pass {MAX_SEED}")


def check_psi(value: object, name: str = "psi") -> float:
    """Truncation psi in (0, 2]: z is scaled toward the origin; 1 = off."""
    lo, hi = LIMITS.psi
    try:
        if isinstance(value, bool):
            raise TypeError
        psi = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a number in ({lo:g}, {hi:g}], got {quote(value)}") from None
    if not math.isfinite(psi) or not lo < psi <= hi:
        raise UserError(f"{name} must be in ({lo:g}, {hi:g}], got {quote(value)}")
    return psi


def parse_seeds(spec: object, limit: int, name: str = "seeds") -> list[int]:
    """'0-999', '1,5,9-12' (the syntax of StyleGAN's gen_images.py) -> seeds in order, repeats kept.

    `limit` bounds the count before any list is built, so '0-4294967295' costs nothing to refuse.
    """
    if not isinstance(spec, str):
        raise UserError(f"{name} must be text such as 0-999 or 1,5,9-12, got {type(spec).__name__}")
    if not spec.strip():
        raise UserError(f"{name} is empty; use e.g. 0-999 or 1,5,9-12")
    if len(spec) > 20 * limit + 100:
        raise UserError(f"{name}: too long ({len(spec)} characters) for at most {limit} seeds")
    seeds: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            a, b = check_seed(m.group(1), name), check_seed(m.group(2), name)
            if b < a:
                raise UserError(f"{name}: range {quote(part)} runs backwards")
            count = b - a + 1
            if len(seeds) + count > limit:
                raise UserError(f"{name}: too many seeds, at most {limit}")
            seeds.extend(range(a, b + 1))
        else:
            seeds.append(check_seed(part, name))
        if len(seeds) > limit:
            raise UserError(f"{name}: too many seeds, at most {limit}")
    return seeds


def compress_seeds(seeds: Iterable[int]) -> str:
    """[0, 1, 2, 3, 7] -> '0-3,7' (what parse_seeds reads)."""
    parts: list[str] = []
    seeds = list(seeds)
    i = 0
    while i < len(seeds):
        j = i
        while j + 1 < len(seeds) and seeds[j + 1] == seeds[j] + 1:
            j += 1
        parts.append(str(seeds[i]) if i == j else f"{seeds[i]}-{seeds[j]}")
        i = j + 1
    return ",".join(parts)


def latents(seeds: Sequence[int] | Iterable[int], z_dim: int, psi: float = 1.0) -> np.ndarray:
    """[len(seeds), z_dim] float32: RandomState(seed).randn(z_dim) as float32, times psi.

    Truncation scales toward the origin, the mean of the prior: psi < 1 trades variety for
    typical, cleaner faces; psi = 1 is the plain rule.
    """
    seeds = list(seeds)
    if not seeds:
        return np.empty((0, z_dim), np.float32)
    z = np.stack([np.random.RandomState(int(s)).randn(z_dim) for s in seeds]).astype(np.float32)
    return z * np.float32(psi) if psi != 1 else z


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation: keeps |z| near the typical norm, so in-between faces stay sharp."""
    na, nb = a / np.linalg.norm(a), b / np.linalg.norm(b)
    omega = np.arccos(np.clip(np.dot(na, nb), -1.0, 1.0))
    if omega < 1e-6:
        return ((1 - t) * a + t * b).astype(np.float32)
    s = np.sin(omega)
    return (np.sin((1 - t) * omega) / s * a + np.sin(t * omega) / s * b).astype(np.float32)


def morph_latents(seeds: Sequence[int], frames: int, z_dim: int, psi: float = 1.0) -> np.ndarray:
    """`frames` latents per leg between consecutive seeds (slerp), plus the last seed's: [(n-1)*frames+1, z_dim]."""
    return morph_between(latents(seeds, z_dim, psi), frames)


def morph_between(keys: np.ndarray, frames: int) -> np.ndarray:
    """`frames` latents per leg between consecutive key latents [k, z_dim] (slerp), plus the last key."""
    z = [slerp(a, b, t) for a, b in zip(keys, keys[1:]) for t in np.linspace(0, 1, frames, endpoint=False)]
    z.append(np.asarray(keys[-1], np.float32))
    return np.stack(z)


ANY_CLASS = "any"


def seed_classes(seeds: Sequence[int] | Iterable[int], z_dim: int, weights: Sequence[float]) -> np.ndarray:
    """The class a conditional model draws for each seed when none is asked for: after the seed's
    latent, RandomState(seed) draws one uniform number, which picks a class with the training data's
    class frequencies (`weights`). So seed 42 gets the same class everywhere (CLI, app, browser)."""
    w = np.asarray(weights, np.float64)
    edges = np.cumsum(w) / w.sum()
    out = []
    for s in seeds:
        rs = np.random.RandomState(int(s))
        rs.randn(z_dim)
        out.append(int(np.searchsorted(edges, rs.random_sample(), side="right")))
    return np.minimum(np.asarray(out, np.int64), len(w) - 1)


def check_class(value: object, classes: Sequence[str], name: str = "class") -> int | None:
    """A class name -> its index; empty or "any" -> None (each seed draws its own, see seed_classes)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", ANY_CLASS)):
        return None
    if not classes:
        raise UserError(f"this model has no classes; leave {name} empty or {ANY_CLASS!r}, got {quote(value)}")
    if not isinstance(value, str) or value.strip() not in classes:
        raise UserError(f"{name} must be one of: {ANY_CLASS}, {', '.join(classes)}; got {quote(value)}")
    return list(classes).index(value.strip())
