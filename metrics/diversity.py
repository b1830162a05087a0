"""Duplicates among generated faces and their distance to training images, in Inception-feature
space, with thresholds calibrated on real images only."""
from __future__ import annotations

import numpy as np

from core.images import digest


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def nearest(query: np.ndarray, bank: np.ndarray, exclude_self: bool = False, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Cosine distance from each query row to its nearest bank row, and that row's index."""
    q, b = _unit(query.astype(np.float32)), _unit(bank.astype(np.float32))
    dist = np.empty(len(q), np.float32)
    idx = np.empty(len(q), np.int64)
    for i in range(0, len(q), chunk):
        d = 1.0 - q[i:i + chunk] @ b.T
        if exclude_self:
            d[np.arange(d.shape[0]), np.arange(i, i + d.shape[0])] = np.inf
        idx[i:i + chunk] = d.argmin(axis=1)
        dist[i:i + chunk] = d[np.arange(d.shape[0]), idx[i:i + chunk]]
    return np.maximum(dist, 0.0), idx


def duplicates(images: np.ndarray, feats: np.ndarray, threshold: float, seeds: list[int], worst: int = 5) -> dict:
    """Exact duplicates (identical pixels) and near-duplicates (feature distance < threshold)."""
    seen: set[bytes] = set()
    exact = 0
    for img in images:
        h = digest(img)
        exact += h in seen
        seen.add(h)
    dist, idx = nearest(feats, feats, exclude_self=True)
    pairs = sorted({(min(i, int(j)), max(i, int(j))) for i, j in enumerate(idx) if dist[i] < threshold})
    closest: dict[tuple[int, int], float] = {}
    for i in np.argsort(dist):
        closest.setdefault((min(int(i), int(idx[i])), max(int(i), int(idx[i]))), float(dist[i]))
        if len(closest) == worst:
            break
    return {"exact": int(exact), "near": len(pairs), "threshold": float(threshold),
            "worst_pairs": [{"seeds": [seeds[i], seeds[j]], "distance": d} for (i, j), d in closest.items()]}


def calibrate_thresholds(ref_feats: np.ndarray, floor_feats: np.ndarray, n: int) -> tuple[float, float]:
    """Thresholds from real images only.

    memorisation: the 1st percentile of held-out real images' distances to their nearest reference
    image, so a generator that behaves like fresh real data scores about 1 %.
    near-duplicate: the 1st percentile of nearest-neighbour distances within n held-out real images.
    """
    held_out = floor_feats if len(floor_feats) else ref_feats
    d_mem, _ = nearest(held_out, ref_feats)
    within = held_out[:max(2, min(n, len(held_out)))]
    d_dup, _ = nearest(within, within, exclude_self=True)
    return float(np.percentile(d_mem, 1)), float(np.percentile(d_dup, 1))
