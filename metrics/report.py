"""One evaluation report for a generator: every registered metric, computed from one pass of
Inception features over the generated faces and the cached reference.

Metrics register by name (`@METRICS.register("kid")`) and get the evaluation's context: the faces
and their features, the reference's features and statistics, and the generator's classes. A new
metric is one function here (or in a module this one imports); metrics.evaluate prints them all.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from core.dataset import dataset_fingerprint, load_images
from core.images import make_grid, to_uint8
from core.registry import Registry
from core.seeds import latents, seed_classes
from metrics.diversity import calibrate_thresholds, duplicates, nearest
from metrics.fid import frechet_distance, protocol_name, reference, stats
from metrics.inception import InceptionFeatures
from metrics.kernels import kid, precision_recall

# z float32 [B, z_dim] (and int64 classes [B] for a conditional generator) -> images float32 [B, 3, 64, 64]
Sampler = Callable[..., np.ndarray]


@dataclass
class Context:
    images: np.ndarray            # uint8 generated faces, seeds 0..N-1
    feats: np.ndarray             # their Inception features
    seeds: list[int]
    ref: dict                     # reference features, statistics, floor, names
    n: int
    div_n: int
    data: Path
    features: InceptionFeatures
    sample: Sampler
    z_dim: int
    classes: list[str] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    progress: bool = True
    per_class_n: int = 1000       # faces per class for the per-class figures


METRICS: Registry[Callable[[Context], dict]] = Registry("metric")


@METRICS.register("fid")
def _fid(c: Context) -> dict:
    return {"fid": round(frechet_distance(stats(c.feats[:c.n]), c.ref), 3)}


@METRICS.register("kid")
def _kid(c: Context) -> dict:
    r = kid(c.feats[:c.n], c.ref["feats"].astype(np.float64))
    return {"kid": round(r["kid"], 6), "kid_std": round(r["kid_std"], 6), "kid_subsets": r["kid_subsets"],
            "kid_subset_size": r["kid_subset_size"]}


@METRICS.register("precision_recall")
def _pr(c: Context) -> dict:
    """k = 3 on the generated faces against as many reference images (the first of the reference)."""
    real = c.ref["feats"][:c.n].astype(np.float64)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in precision_recall(c.feats[:c.n], real).items()}


@METRICS.register("duplicates")
def _duplicates(c: Context) -> dict:
    _, dup_t = calibrate_thresholds(c.ref["feats"], c.ref["floor_feats"], c.div_n)
    return {"duplicates": duplicates(c.images[:c.div_n], c.feats[:c.div_n], dup_t, c.seeds[:c.div_n])}


@METRICS.register("memorisation")
def _memorisation(c: Context) -> dict:
    mem_t, _ = calibrate_thresholds(c.ref["feats"], c.ref["floor_feats"], c.div_n)
    d_nn, j_nn = nearest(c.feats[:c.div_n], c.ref["feats"])
    closest = np.argsort(d_nn)[:16]
    c.closest = [(int(i), int(j_nn[i])) for i in closest]  # for the closest-pairs picture
    return {"memorisation": {
        "rate": float((d_nn < mem_t).mean()), "expected_for_real_images": 0.01, "threshold": mem_t,
        "n": c.div_n, "median_nn_distance": float(np.median(d_nn)),
        "closest": [{"seed": c.seeds[int(i)], "train_image": c.ref["names"][int(j_nn[i])],
                     "distance": float(d_nn[i])} for i in closest],
        "note": "nearest neighbours are searched among the reference images (a subset of the training set)"}}


@METRICS.register("per_class")
def _per_class(c: Context) -> dict:
    """Conditional generators: each class's faces against the reference images of that class (FID),
    and how often a face's measured class is the class it was asked for."""
    if not c.classes:
        return {}
    from core.attributes import CLASS_SETS

    measure = CLASS_SETS["hair"]
    ref_labels, names = reference_classes(c.data, c.ref["names"])
    if list(names) != list(c.classes):
        return {"per_class": {"note": f"the model's classes are not class set 'hair': {', '.join(c.classes)}"}}
    rows, hits, total, per_class_n = {}, 0, 0, c.per_class_n
    for k, name in enumerate(c.classes):
        seeds = list(range(per_class_n))
        imgs = generate(c.sample, seeds, c.z_dim, classes=np.full(len(seeds), k), progress=False)
        measured, _ = measure(imgs)
        right = int((measured == k).sum())
        hits, total = hits + right, total + len(seeds)
        real = c.ref["feats"][ref_labels == k].astype(np.float64)
        row = {"n_generated": len(seeds), "n_real": int(len(real)), "class_accuracy": round(right / len(seeds), 4)}
        if len(real) > 2:
            row["fid"] = round(frechet_distance(stats(c.features(imgs, progress=False)), stats(real)), 3)
        rows[name] = row
    return {"per_class": {"classes": rows, "class_accuracy": round(hits / max(1, total), 4),
                          "note": f"{per_class_n} faces per class (seeds 0-{per_class_n - 1}) against the reference "
                                  f"images of that class; FID over a few hundred real images is biased upward, "
                                  f"compare classes with each other, not with FID-5k"}}


def reference_classes(data: Path, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """The hair class of each reference image (class set 'hair', measured on the images)."""
    from core.attributes import CLASS_SETS

    return CLASS_SETS["hair"](load_images(data, names)[0])


def real_floor(c: Context) -> dict:
    """What real faces score on KID and precision/recall: the held-out floor images in place of the
    generated ones (FID's floor is computed with the reference and cached)."""
    floor = c.ref["floor_feats"].astype(np.float64)
    if len(floor) < 2 or not {"kid", "precision_recall"} & set(METRICS.names()):
        return {}
    k = kid(floor[:c.n], c.ref["feats"].astype(np.float64))
    pr = precision_recall(floor[:c.n], c.ref["feats"][:c.n].astype(np.float64))
    return {"floor_kid": round(k["kid"], 6), "floor_precision": round(pr["precision"], 4),
            "floor_recall": round(pr["recall"], 4)}


def own_classes(seeds: range | list[int], z_dim: int, classes: list[str] | None,
                weights: list[float] | None = None) -> np.ndarray | None:
    """Each seed's own class, as the runtime draws it for "any class", for a conditional generator
    (training frequencies, or uniform without them); None for an unconditional one."""
    return seed_classes(seeds, z_dim, weights or [1] * len(classes)) if classes else None


def generate(sample: Sampler, seeds: range | list[int], z_dim: int, batch: int = 250, progress: bool = True,
             classes: np.ndarray | None = None) -> np.ndarray:
    """uint8 faces [N, 64, 64, 3] for the seeds, by the project's latent rule (and classes, if any)."""
    from tqdm import tqdm

    seeds = list(seeds)
    out = np.empty((len(seeds), 64, 64, 3), np.uint8)
    for i in tqdm(range(0, len(seeds), batch), desc="generating", unit="batch", disable=not progress, leave=False):
        z = latents(seeds[i:i + batch], z_dim)
        out[i:i + batch] = to_uint8(sample(z) if classes is None else sample(z, classes[i:i + batch]))
    return out


def training_metrics(sample: Sampler, z_dim: int, data: str | Path, n: int = 5000, ref_n: int | None = None,
                     device: str = "cpu", classes: list[str] | None = None,
                     weights: list[float] | None = None) -> dict:
    """FID on the cached reference (the full report's: same protocol and cache), with KID, precision,
    recall and near-duplicates of the same faces (the trainer's --eval-every; no memorisation search
    or closest-pairs picture). A conditional generator's faces draw each seed's own class
    as everywhere else; the same faces give the class accuracy (measured class = asked class) and
    each class's FID against the reference images of that class, so these cost no more faces."""
    from core.dataset import list_images
    from metrics.fid import fit_protocol

    ref_n, floor_n, _ = fit_protocol(len(list_images(data)), ref_n)  # the full report's sizes (None: the default)
    feats = InceptionFeatures(device)
    ref = reference(data, ref_n, floor_n, feats, progress=False)
    asked = own_classes(range(n), z_dim, classes, weights)
    gen = generate(sample, range(n), z_dim, progress=False, classes=asked)
    gen_feats = feats(gen, progress=False)
    out = {"fid": frechet_distance(stats(gen_feats), ref), "protocol": protocol_name(n, ref_n),
           **quick_extras(gen, gen_feats, ref)}
    if not classes:
        return out
    from core.attributes import CLASS_SETS

    measure = CLASS_SETS["hair"]
    measured, names = measure(gen)
    if list(names) != list(classes):
        return out
    ref_labels, _ = reference_classes(data, ref["names"])
    out["class_accuracy"] = float((measured == asked).mean())
    out["per_class"] = {}
    for k, name in enumerate(classes):
        mine, real = asked == k, ref["feats"][ref_labels == k].astype(np.float64)
        row = {"n_generated": int(mine.sum()), "n_real": int(len(real)),
               "class_accuracy": float((measured[mine] == k).mean()) if mine.any() else None}
        if mine.sum() > 2 and len(real) > 2:
            row["fid"] = frechet_distance(stats(gen_feats[mine]), stats(real))
        out["per_class"][name] = row
    return out


def quick_extras(gen: np.ndarray, gen_feats: np.ndarray, ref: dict, div_n: int = 1000) -> dict:
    """KID, precision and recall on the same faces, and near-duplicates among the first `div_n`:
    seconds beside the minutes of features, so every evaluation during a run reports them."""
    real = ref["feats"].astype(np.float64)
    k = kid(gen_feats, real)
    pr = precision_recall(gen_feats, real[:len(gen_feats)])
    _, dup_t = calibrate_thresholds(ref["feats"], ref["floor_feats"], div_n)
    n = min(div_n, len(gen))
    dup = duplicates(gen[:n], gen_feats[:n], dup_t, list(range(n)))
    return {"kid": k["kid"], "kid_std": k["kid_std"], "precision": pr["precision"], "recall": pr["recall"],
            "near_duplicates": dup["near"], "duplicates_n": n}


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
             pairs_png: Path | None = None, progress: bool = True, classes: list[str] | None = None,
             weights: list[float] | None = None, metrics: list[str] | None = None, per_class_n: int = 1000) -> dict:
    """The full report as a JSON-ready dict; `device` is where Inception runs. A conditional generator
    draws each seed's class as the runtime does for "any class" (core.seeds.seed_classes)."""
    t0 = time.time()
    data = Path(data)
    feats = InceptionFeatures(device, cache_dir=cache_dir)
    ref = reference(data, ref_n, floor_n, feats, cache_dir, progress)
    seeds = list(range(max(n, div_n)))
    classes = list(classes or [])
    images = generate(sample, seeds, z_dim, progress=progress, classes=own_classes(seeds, z_dim, classes, weights))
    ctx = Context(images, feats(images, desc="generated", progress=progress), seeds, ref, n, div_n, data, feats,
                  sample, z_dim, classes, list(weights or []), progress, per_class_n)
    report = {"protocol": protocol_name(n, ref_n), "n": n, "ref_n": ref_n,
              "floor": round(ref["floor"], 3), "floor_n": len(ref["floor_feats"]), **real_floor(ctx)}
    for name in metrics or METRICS.names():
        report.update(METRICS[name](ctx))
    # Records name the data by file name and content hash, not by a path on the machine that made them.
    report.update({"dataset": {"name": data.name, "sha256": dataset_fingerprint(data)},
                   "reference_cache": Path(ref["cache"]).name, "inception_device": device,
                   "inception_backend": feats.backend, "seconds": round(time.time() - t0, 1)})
    if pairs_png and getattr(ctx, "closest", None):
        closest_pairs_picture(images, data, ref["names"], ctx.closest, pairs_png)
        report["memorisation"]["picture"] = str(pairs_png)
    return report


def summary_line(r: dict) -> str:
    gen = r.get("generator", {})
    where = f"Inception on {r['inception_device']}" + (f", generator on {gen['provider']}" if gen.get("provider") else "")
    parts = [f"FID {r['fid']:.2f} (floor {r['floor']:.2f}; {r['protocol']})"]
    if "kid" in r:
        parts.append(f"KID {1000 * r['kid']:.2f} ± {1000 * r['kid_std']:.2f} x1e-3")
    if "precision" in r:
        parts.append(f"precision {r['precision']:.3f}, recall {r['recall']:.3f} (k={r['pr_k']})")
    if "duplicates" in r:
        parts.append(f"duplicates: {r['duplicates']['exact']} exact, {r['duplicates']['near']} near of "
                     f"{r['memorisation']['n']}")
    if "memorisation" in r:
        parts.append(f"memorisation {100 * r['memorisation']['rate']:.1f}% (real images: 1%)")
    if r.get("per_class", {}).get("classes"):
        pc = r["per_class"]
        parts.append(f"class accuracy {100 * pc['class_accuracy']:.1f}% over {len(pc['classes'])} classes")
    return " | ".join(parts) + f" | {r['seconds']:.0f} s, {where}"
