"""One evaluation report for a generator: FID against the cached reference with its floor,
duplicates among 1,000 faces, and memorisation of training images."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from core.dataset import dataset_fingerprint, load_images
from core.images import make_grid, to_uint8
from core.seeds import latents
from metrics.diversity import calibrate_thresholds, duplicates, nearest
from metrics.fid import (
    InceptionFeatures,
    frechet_distance,
    protocol_name,
    reference,
    stats,
)

Sampler = Callable[[np.ndarray], np.ndarray]  # z float32 [B, z_dim] -> images float32 [B, 3, 64, 64] in [-1, 1]


def generate(sample: Sampler, seeds: range | list[int], z_dim: int, batch: int = 250,
             progress: bool = True) -> np.ndarray:
    """uint8 faces [N, 64, 64, 3] for the seeds, by the project's latent rule."""
    from tqdm import tqdm

    seeds = list(seeds)
    out = np.empty((len(seeds), 64, 64, 3), np.uint8)
    for i in tqdm(range(0, len(seeds), batch), desc="generating", unit="batch", disable=not progress, leave=False):
        out[i:i + batch] = to_uint8(sample(latents(seeds[i:i + batch], z_dim)))
    return out


def fid_only(sample: Sampler, z_dim: int, data: str | Path, n: int = 5000, ref_n: int = 10000,
             device: str = "cpu") -> dict:
    """FID on the cached reference, without the floor or diversity (the trainer's --eval-every)."""
    feats = InceptionFeatures(device)
    ref = reference(data, ref_n, 0, feats, progress=False)
    gen = generate(sample, range(n), z_dim, progress=False)
    return {"fid": frechet_distance(stats(feats(gen, progress=False)), ref), "protocol": protocol_name(n, ref_n)}


def closest_pairs_picture(gen: np.ndarray, data: Path, ref_names: list[str], pairs: list[tuple[int, int]],
                          path: Path) -> None:
    """Generated face left, its nearest reference image right; four pairs per row (holds training
    images, so it is never committed)."""
    from PIL import Image

    reals, _ = load_images(data, [ref_names[j] for _, j in pairs])
    tiles = np.stack([x for (i, _), r in zip(pairs, reals) for x in (gen[i], r)])
    grid = make_grid(tiles, cols=8)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.Resampling.NEAREST).save(path)


def evaluate(sample: Sampler, z_dim: int, data: str | Path, n: int = 5000, ref_n: int = 10000,
             floor_n: int = 5000, div_n: int = 1000, device: str = "cpu", cache_dir: Path | None = None,
             pairs_png: Path | None = None, progress: bool = True) -> dict:
    """The full report as a JSON-ready dict; `device` is where Inception runs."""
    t0 = time.time()
    data = Path(data)
    feats = InceptionFeatures(device)
    ref = reference(data, ref_n, floor_n, feats, cache_dir, progress)
    seeds = list(range(max(n, div_n)))
    images = generate(sample, seeds, z_dim, progress=progress)
    gen_feats = feats(images, desc="generated", progress=progress)
    fid = frechet_distance(stats(gen_feats[:n]), ref)
    mem_t, dup_t = calibrate_thresholds(ref["feats"], ref["floor_feats"], div_n)
    dups = duplicates(images[:div_n], gen_feats[:div_n], dup_t, seeds[:div_n])
    d_nn, j_nn = nearest(gen_feats[:div_n], ref["feats"])
    closest = np.argsort(d_nn)[:16]
    report = {
        "fid": round(fid, 3), "protocol": protocol_name(n, ref_n), "n": n, "ref_n": ref_n,
        "floor": round(ref["floor"], 3), "floor_n": len(ref["floor_feats"]),
        "duplicates": dups,
        "memorisation": {
            "rate": float((d_nn < mem_t).mean()), "expected_for_real_images": 0.01, "threshold": mem_t,
            "n": div_n, "median_nn_distance": float(np.median(d_nn)),
            "closest": [{"seed": seeds[int(i)], "train_image": ref["names"][int(j_nn[i])],
                         "distance": float(d_nn[i])} for i in closest],
            "note": "nearest neighbours are searched among the reference images (a subset of the training set)",
        },
        "dataset": {"path": str(data), "sha256": dataset_fingerprint(data)},
        "reference_cache": ref["cache"], "inception_device": device, "seconds": round(time.time() - t0, 1),
    }
    if pairs_png:
        closest_pairs_picture(images, data, ref["names"], [(int(i), int(j_nn[i])) for i in closest], pairs_png)
        report["memorisation"]["picture"] = str(pairs_png)
    return report


def summary_line(r: dict) -> str:
    gen = r.get("generator", {})
    where = f"Inception on {r['inception_device']}" + (f", generator on {gen['provider']}" if gen.get("provider") else "")
    return (f"FID {r['fid']:.2f} (floor {r['floor']:.2f}; {r['protocol']}) | duplicates: "
            f"{r['duplicates']['exact']} exact, {r['duplicates']['near']} near of {r['memorisation']['n']} | "
            f"memorisation {100 * r['memorisation']['rate']:.1f}% (real images: 1%) | {r['seconds']:.0f} s, {where}")
