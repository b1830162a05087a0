"""How well a model's encoder finds faces: reconstruction of generated and real faces, three ways.

    python -m scripts.inversion_report --model generator --data data/anime-faces-64.zip
    python -m scripts.inversion_report --model generator-w64 --n 200 --refine-n 50     # quicker

For N generated faces (seeds of the held-out "inversion" range) and, with --data, N real faces, it
reconstructs each face three ways: the encoder's reading (what the CLI, the app and the browser
use), the encoder's reading refined by gradient descent on the latent (PyTorch; on the first
--refine-n faces), and, as a baseline, the nearest in pixels of the faces of --pool seeds. It prints
and writes report.json (PSNR in dB, the distance of their Inception-stem features, the time per
face) and grid.png: generated faces beside their three reconstructions. A grid of real faces goes
only where --real-grid says (your data's terms decide where it may be shown).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from core.dataset import dataset_fingerprint, list_images, load_images
from core.errors import UserError, command, require
from core.files import atomic_write_text
from core.images import make_grid, upscale
from core.seeds import latents, seed_range

ROOT = Path(__file__).resolve().parents[1]
PROXY = ROOT / "metrics" / "stats" / "proxy-anime-faces-64.pt"


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB of uint8 images [N, 64, 64, 3]."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(1)
    return 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))


def nearest_seeds(engine, faces: np.ndarray, pool: int, batch: int = 500) -> tuple[np.ndarray, float]:
    """The face of the pool's seeds (0 .. pool-1) nearest each face in pixels, and the search's seconds."""
    t = time.perf_counter()
    flat = faces.reshape(len(faces), -1).astype(np.float32)
    best, best_d = np.zeros_like(faces), np.full(len(faces), np.inf)
    for start in range(0, pool, batch):
        cand = engine.faces(range(start, min(pool, start + batch)), cls=None)
        c = cand.reshape(len(cand), -1).astype(np.float32)
        d = (flat ** 2).sum(1)[:, None] - 2 * flat @ c.T + (c ** 2).sum(1)[None]
        k = d.argmin(1)
        better = d[np.arange(len(faces)), k] < best_d
        best[better], best_d[better] = cand[k[better]], d[np.arange(len(faces)), k][better]
    return best, time.perf_counter() - t


def refined(model: Path, engine, faces: np.ndarray, z0: np.ndarray, classes: np.ndarray | None,
            steps: int) -> tuple[np.ndarray, float]:
    """Faces of the encoder's latents after `steps` of refinement (trainer/encoder/refine.py), and seconds."""
    import torch

    from trainer.encoder.refine import refine
    from trainer.finetune.sources import load_generator_source

    g, _ = load_generator_source(str(model))
    g.eval()
    x = torch.from_numpy(faces.astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1)
    y = None if classes is None else torch.from_numpy(classes)
    t = time.perf_counter()
    z = refine(g, torch.from_numpy(z0), x, y, steps=steps).numpy()
    seconds = time.perf_counter() - t
    return engine.from_latents(z, classes), seconds


def measure(model: Path, engine, faces: np.ndarray, pool: int, refine_n: int, refine_steps: int, proxy) -> dict:
    """Reconstructions three ways and their figures for one set of faces."""
    t = time.perf_counter()
    z, classes = engine.invert(faces)
    enc_s = time.perf_counter() - t
    recon = {"encoder": engine.from_latents(z, classes)}
    seconds = {"encoder": enc_s / len(faces)}
    n_ref = min(refine_n, len(faces))
    if n_ref:
        recon["encoder + refinement"], s = refined(model, engine, faces[:n_ref], z[:n_ref],
                                                   None if classes is None else classes[:n_ref], refine_steps)
        seconds["encoder + refinement"] = enc_s / len(faces) + s / n_ref
    recon[f"nearest of {pool:,} seeds"], s = nearest_seeds(engine, faces, pool)
    seconds[f"nearest of {pool:,} seeds"] = s / len(faces)
    feats = proxy.features(faces)
    out = {}
    for name, r in recon.items():
        n = len(r)
        f = proxy.features(r)
        dist = np.linalg.norm(f - feats[:n], axis=1)
        out[name] = {"faces": n, "psnr_db": round(float(psnr(faces[:n], r).mean()), 2),
                     "feature_distance": round(float(dist.mean()), 3), "seconds_per_face": round(seconds[name], 4)}
        if name == "encoder + refinement":  # the same faces by the encoder alone, to compare like with like
            out[name]["encoder_alone_psnr_db"] = round(float(psnr(faces[:n], recon["encoder"][:n]).mean()), 2)
    # The scale of the feature distance: two unrelated faces of the same set.
    out["unrelated faces"] = {"feature_distance": round(float(np.linalg.norm(feats - np.roll(feats, 1, 0), axis=1).mean()), 3)}
    return {"figures": out, "recon": recon}


def grid(faces: np.ndarray, recon: dict, n: int) -> Image.Image:
    """Rows: the faces, then each reconstruction of them; n columns."""
    rows = [faces[:n]] + [r[:n] for r in recon.values()]
    n = min(n, *(len(r) for r in rows))
    return upscale(Image.fromarray(make_grid(np.concatenate([r[:n] for r in rows]), cols=n)), 2)


def table(report: dict) -> str:
    lines = ["| faces | method | PSNR (dB) | feature distance | time per face |", "| --- | --- | --- | --- | --- |"]
    for kind, figures in report["sets"].items():
        for method, f in figures.items():
            if "psnr_db" not in f:
                lines.append(f"| {kind} | {method} (scale) | - | {f['feature_distance']:.2f} | - |")
                continue
            also = f" ({f['encoder_alone_psnr_db']:.2f} by the encoder alone)" if "encoder_alone_psnr_db" in f else ""
            lines.append(f"| {kind} ({f['faces']}) | {method} | {f['psnr_db']:.2f}{also} | {f['feature_distance']:.2f} "
                         f"| {1000 * f['seconds_per_face']:.1f} ms |")
    return "\n".join(lines)


@command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.inversion_report", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="generator", help="a model of the menu with an encoder beside it (default generator)")
    p.add_argument("--data", type=Path, help="real faces (folder or .zip): also measure on N of them")
    p.add_argument("--n", type=int, default=1000, help="faces per set (default 1000)")
    p.add_argument("--pool", type=int, default=10000, help="seeds of the nearest-seed baseline (default 10000)")
    p.add_argument("--refine-n", type=int, default=200, help="faces per set that are also refined (default 200)")
    p.add_argument("--refine-steps", type=int, default=100, help="refinement steps (default 100)")
    p.add_argument("--out", type=Path, help="report.json and grid.png (default docs/models/inversion/MODEL)")
    p.add_argument("--real-grid", type=Path, help="also write the real faces' grid to this PNG")
    a = p.parse_args(argv)
    if a.n < 1 or a.pool < 1 or a.refine_n < 0 or a.refine_steps < 1:
        raise UserError("--n, --pool and --refine-steps must be positive, --refine-n at least 0")
    require("measuring inversion", "torch")
    from metrics.proxy import Proxy
    from runtime.menu import ModelMenu

    menu = ModelMenu(device="cpu", default=a.model)
    engine = menu.get()
    engine.encoder()  # a clear error now when the model has no encoder
    out = a.out or ROOT / "docs" / "models" / "inversion" / Path(menu.default).stem
    proxy = Proxy(PROXY)
    sets = {}
    seeds = list(seed_range("inversion", a.n))
    classes = engine.class_ids(seeds, None)
    generated = engine.render(latents(seeds, engine.z_dim), classes)
    sets["generated"] = measure(engine.model_path, engine, generated, a.pool, a.refine_n, a.refine_steps, proxy)
    out.mkdir(parents=True, exist_ok=True)
    grid(generated, sets["generated"]["recon"], 12).save(out / "grid.png")
    if a.data:
        names = list_images(a.data)
        pick = [names[i] for i in np.random.RandomState(1).permutation(len(names))[:a.n]]
        real, _ = load_images(a.data, pick)
        sets["real"] = measure(engine.model_path, engine, real, a.pool, a.refine_n, a.refine_steps, proxy)
        if a.real_grid:
            grid(real, sets["real"]["recon"], 12).save(a.real_grid)
    report = {"model": engine.model_path.name, "model_sha256": engine.sha256, "encoder": engine.encoder_path.name,
              "n": a.n, "pool": a.pool, "refine_steps": a.refine_steps,
              # the data by name and content hash, never the path on the machine that measured
              "data": {"name": a.data.name, "sha256": dataset_fingerprint(a.data)} if a.data else None,
              "sets": {k: v["figures"] for k, v in sets.items()},
              "rows": "grid.png: generated faces; their encoder reconstructions; refined; the nearest seed's face"}
    atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"wrote {out / 'report.json'} and {out / 'grid.png'}" + (f" and {a.real_grid}" if a.real_grid else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
