"""Measure steering directions of an ONNX generator and write NAME.directions.json beside it.

    python -m export.directions --model demo/models/generator.onnx
    python -m export.directions --model demo/models/edge-w64.onnx --samples 20000

The data set has no labels, so directions come from the generator itself:
- named: plain image statistics of generated faces (pseudo-labels: hair colour families and
  darkness from the top of the face, brightness, background lightness, saturation), and per
  attribute the least-squares linear direction in z that predicts it (InterFaceGAN's idea, with a
  regression instead of a classifier). Hue is circular, so each colour family gets its own score.
- principal: GANSpace's recipe for non-StyleGAN generators: PCA of the first layer's outputs
  over many z, each component mapped back to z by regression, ranked by how much a
  step along it changes the pixels.
Each direction's effect is then measured on held-out seeds: how much every attribute moves per unit
step, in units of that attribute's spread. Torch-free: onnx and onnxruntime only.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


import numpy as np
import onnx

from core.attributes import measure_attributes
from core.errors import UserError, command
from core.files import atomic_write_text, sha256_file
from core.images import to_uint8
from core.ort import model_classes, open_session
from core.seeds import latents, seed_classes, seed_range
from core.steering import directions_path

FIT_SEEDS = seed_range("steering: fitting")   # disjoint from the seeds metrics use (core/seeds.py)
TEST_SEEDS = seed_range("steering: measuring")
STEP = 2.0


class Model:
    """The ONNX generator, plus its first layer's output as a second output (for the principal directions)."""

    def __init__(self, path: Path):
        m = onnx.load(str(path))
        self.sha256 = sha256_file(path)
        # The first layer's output (before its activation, which int8 exports fold into quantisation).
        first = next((n for n in m.graph.node if n.op_type in ("Conv", "ConvTranspose", "Gemm")), None)
        if first is None:
            raise UserError(f"{path}: no convolution found for the principal directions")
        inferred = onnx.shape_inference.infer_shapes(m)
        kinds = {vi.name: vi.type.tensor_type.elem_type for vi in inferred.graph.value_info}
        m.graph.output.append(onnx.helper.make_tensor_value_info(
            first.output[0], kinds.get(first.output[0], onnx.TensorProto.FLOAT), None))
        self.session = open_session(m.SerializeToString(), "cpu").session
        self.input = self.session.get_inputs()[0].name
        self.z_dim = int(self.session.get_inputs()[0].shape[1])
        self.classes, self.weights = model_classes(self.session)

    def classes_of(self, seeds: range) -> np.ndarray | None:
        """A conditional model's faces get each seed's own class ("any class"), as the runtime gives them."""
        return seed_classes(seeds, self.z_dim, self.weights) if self.classes else None

    def run(self, z: np.ndarray, y: np.ndarray | None = None, keep_acts: int = 0,
            batch: int = 250) -> tuple[np.ndarray, np.ndarray | None]:
        """(uint8 faces, the first `keep_acts` faces' first-layer outputs, flattened) for latents z
        (and their classes, for a conditional model)."""
        faces, acts = [], []
        for i in range(0, len(z), batch):
            feeds = {self.input: z[i:i + batch]}
            if self.classes:
                feeds["class"] = y[i:i + batch]
            img, act = self.session.run(None, feeds)
            faces.append(to_uint8(img.astype(np.float32)))
            if i < keep_acts:
                acts.append(act.reshape(len(img), -1)[:keep_acts - i].astype(np.float32))
        return np.concatenate(faces), (np.concatenate(acts) if acts else None)


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def fit_named(z: np.ndarray, attrs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per attribute, the least-squares linear predictor from z; its weights are the direction.
    An attribute that never varies (no pink hair at all, say) gets no direction."""
    x = np.hstack([z, np.ones((len(z), 1), np.float32)])
    out = {}
    for name, a in attrs.items():
        if a.std() < 1e-6:
            continue
        w = np.linalg.lstsq(x, (a - a.mean()) / a.std(), rcond=None)[0][:-1]
        if np.linalg.norm(w) > 1e-8:
            out[name] = unit(w)
    return out


def fit_principal(z: np.ndarray, acts: np.ndarray, k: int) -> list[np.ndarray]:
    """PCA of the activations (through the N x N Gram matrix: cheap for wide layers), then each
    component's coordinate regressed on z: the z direction that moves along that component."""
    x = acts - acts.mean(axis=0)
    gram = x @ x.T
    values, vectors = np.linalg.eigh(gram)
    order = np.argsort(values)[::-1][:k]
    coords = vectors[:, order] * np.sqrt(np.maximum(values[order], 0))  # [N, k] PCA coordinates
    return [unit(z.T @ coords[:, i]) for i in range(len(order))]


def effects(model: Model, z: np.ndarray, y: np.ndarray | None, base: dict[str, np.ndarray], spread: dict[str, float],
            vector: np.ndarray) -> tuple[dict[str, float], float]:
    """Change of every attribute per unit step (in units of its spread), and mean |pixel change|."""
    lo, _ = model.run(z - STEP * vector, y)
    hi, _ = model.run(z + STEP * vector, y)
    a_lo, a_hi = measure_attributes(lo), measure_attributes(hi)
    moved = {n: float((a_hi[n] - a_lo[n]).mean() / (2 * STEP) / spread[n]) for n in base}
    return moved, float(np.abs(hi.astype(np.float32) - lo.astype(np.float32)).mean() / 255)


def measure(path: Path, samples: int = 10_000, principal: int = 6, candidates: int = 12,
            progress=print) -> dict:
    t0 = time.time()
    model = Model(path)
    z, y = latents(FIT_SEEDS[:samples], model.z_dim), model.classes_of(FIT_SEEDS[:samples])
    n_pca = min(len(z), 3000)  # the Gram matrix is n_pca squared; activations of wide layers are large
    progress(f"generating {samples} faces for the fit")
    faces, acts = model.run(z, y, keep_acts=n_pca)
    attrs = measure_attributes(faces)
    spread = {n: float(a.std() + 1e-8) for n, a in attrs.items()}
    named = fit_named(z, attrs)
    progress(f"PCA of the first layer ({acts.shape[1]} values per face)")
    pcs = fit_principal(z[:n_pca], acts, candidates)
    zt, yt = latents(TEST_SEEDS, model.z_dim), model.classes_of(TEST_SEEDS)
    test_attrs = measure_attributes(model.run(zt, yt)[0])
    entries = []
    for name, vec in named.items():
        moved, pixels = effects(model, zt, yt, test_attrs, spread, vec)
        entries.append({"name": name, "kind": "named", "vector": vec.round(6).tolist(), "effect": moved,
                        "pixel_change": pixels})
    ranked = []
    for i, vec in enumerate(pcs):
        moved, pixels = effects(model, zt, yt, test_attrs, spread, vec)
        ranked.append((pixels, i, vec, moved))
    ranked.sort(key=lambda r: -r[0])  # the components that change the image most come first
    for rank, (pixels, i, vec, moved) in enumerate(ranked[:principal], 1):
        entries.append({"name": f"pc{rank}", "kind": "principal", "component": i + 1, "vector": vec.round(6).tolist(),
                        "effect": moved, "pixel_change": pixels})
    return {"model": path.name, "model_sha256": model.sha256, "z_dim": model.z_dim,
            "method": {"named": f"least-squares direction in z per pseudo-label, {samples} faces from seeds "
                                f"{FIT_SEEDS[0]}+; labels: hair colour families (hue closeness^4 x saturation x "
                                f"value in rows 1-16), hair darkness, brightness, corner lightness, saturation",
                       "principal": f"PCA of the first layer's outputs over {n_pca} faces, components regressed "
                                    f"on z, the {principal} of the first {candidates} that change pixels most",
                       "effect": f"attribute change per unit step in units of its spread, over {len(zt)} seeds "
                                 f"from {TEST_SEEDS[0]}, steps of +-{STEP:g}"},
            "seconds": round(time.time() - t0, 1), "directions": entries}


@command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.directions", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="the ONNX generator")
    p.add_argument("--samples", type=int, default=10_000, help="faces for the fit (default 10000)")
    p.add_argument("--principal", type=int, default=6, help="principal directions to keep (default 6)")
    p.add_argument("--out", type=Path, help=f"default: NAME{directions_path(Path('x')).name[1:]} beside the model")
    a = p.parse_args(argv)
    if not a.model.is_file():
        raise UserError(f"model file not found: {a.model}")
    if not 100 <= a.samples <= 100_000 or not 0 <= a.principal <= 12:
        raise UserError("--samples must be from 100 to 100000 and --principal from 0 to 12")
    result = measure(a.model, a.samples, a.principal, progress=lambda m: print(m, file=sys.stderr))
    out = a.out or directions_path(a.model)
    atomic_write_text(out, json.dumps(result, indent=1) + "\n", make_parents=True)
    print(f"wrote {out}: {len(result['directions'])} directions in {result['seconds']:.0f} s")
    print(effect_table(result))
    return 0


def effect_table(result: dict) -> str:
    """Markdown: per named direction, its own attribute's change per unit step and the largest other."""
    rows = ["| direction | its attribute per unit step | largest other (attribute) | mean pixel change, -2 to +2 |",
            "| --- | --- | --- | --- |"]
    for e in result["directions"]:
        if e["kind"] != "named":
            continue
        own = e["effect"][e["name"]]
        other = max((k for k in e["effect"] if k != e["name"]), key=lambda k: abs(e["effect"][k]))
        rows.append(f"| `{e['name']}` | {own:+.2f} | {e['effect'][other]:+.2f} ({other}) | {e['pixel_change']:.3f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
