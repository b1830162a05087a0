"""The torch-free runtime: one ONNX generator on onnxruntime, and the faces, grids, morphs and zips
made from it. Used by the batch CLI (demo/generate.py) and the web app (demo/app.py).

Only onnxruntime, numpy and pillow are imported, so a Hugging Face Space stays small.
"""
from __future__ import annotations

import json
import os
import time
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from core.errors import UserError
from core.files import atomic_write, sha256_file
from core.images import digest, make_grid, png_batch, seed_filename, to_uint8
from core.limits import FACE
from core.ort import open_session
from core.seeds import (
    LATENT_RULE,
    check_psi,
    check_seed,
    compress_seeds,
    latents,
    morph_latents,
)
from core.steering import Directions, directions_path

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODELS_DIR / "generator.onnx"
IMAGE_SHAPE = (3, FACE, FACE)
Progress = Callable[[int, int], None]  # (done, total)


class EngineError(UserError):
    """Bad input or an unusable model; the message is one line meant for the user."""


def _dim(d) -> int | str:
    return d if isinstance(d, int) else str(d)


@dataclass
class Engine:
    """An ONNX generator ready to run. Build it with Engine.load()."""

    session: object
    model_path: Path
    z_dim: int
    metadata: dict[str, str]
    provider: str
    provider_note: str
    sha256: str
    input_name: str = "z"
    directions: Directions | None = None   # from NAME.directions.json beside the model, when there is one
    directions_note: str = ""
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)),
                                      repr=False)

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, model: str | Path | None = None, device: str = "auto") -> "Engine":
        """model: a path (default: the shipped generator). device: auto | cpu | cuda."""
        path = Path(model or DEFAULT_MODEL)
        if not path.is_file():
            raise EngineError(f"model file not found: {path}")
        if path.stat().st_size == 0:
            raise EngineError(f"model file is empty: {path}")
        s = open_session(path, device)
        z_dim = cls._check_io(s.session, path)
        meta = dict(s.session.get_modelmeta().custom_metadata_map)
        if "z_dim" in meta and meta["z_dim"] != str(z_dim):
            raise EngineError(f"{path}: metadata z_dim {meta['z_dim']} disagrees with the input shape {z_dim}")
        sha = sha256_file(path)
        directions, note = None, "no directions file beside the model"
        if directions_path(path).is_file():
            try:
                directions, note = Directions.load(directions_path(path), z_dim, sha), ""
            except UserError as exc:  # steering is off for this model; everything else works
                note = str(exc)
        return cls(s.session, path, z_dim, meta, s.provider, s.note, sha, s.session.get_inputs()[0].name,
                   directions, note)

    @staticmethod
    def _check_io(sess, path: Path) -> int:
        ins, outs = sess.get_inputs(), sess.get_outputs()
        if len(ins) != 1 or len(outs) != 1:
            raise EngineError(f"{path} is not a generator: expected one input and one output, "
                              f"got {len(ins)} and {len(outs)}")
        i, o = ins[0], outs[0]
        if i.type != "tensor(float)" or len(i.shape) != 2 or not isinstance(i.shape[1], int) or i.shape[1] < 1:
            raise EngineError(f"{path} is not a generator: input must be float [batch, z_dim], got {i.type} "
                              f"{[_dim(d) for d in i.shape]}")
        if o.type != "tensor(float)" or len(o.shape) != 4 or tuple(o.shape[1:]) != IMAGE_SHAPE:
            raise EngineError(f"{path} is not a 64x64 generator: output must be float [batch, 3, 64, 64], "
                              f"got {o.type} {[_dim(d) for d in o.shape]}")
        return int(i.shape[1])

    # ------------------------------------------------------------------ generation

    def run(self, z: np.ndarray) -> np.ndarray:
        """[B, z_dim] float32 -> [B, 3, 64, 64] float32 in [-1, 1]."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(z, np.float32)})[0]

    def batches(self, z: np.ndarray, batch_size: int = 64, progress: Progress | None = None) -> Iterator[np.ndarray]:
        """uint8 [b, 64, 64, 3] per fixed-size batch: memory stays flat for any count."""
        if batch_size < 1:
            raise EngineError(f"batch size must be at least 1, got {batch_size}")
        for i in range(0, len(z), batch_size):
            yield to_uint8(self.run(z[i:i + batch_size]))
            if progress:
                progress(min(i + batch_size, len(z)), len(z))

    def render(self, z: np.ndarray, batch_size: int = 64, progress: Progress | None = None) -> np.ndarray:
        """uint8 faces [N, 64, 64, 3] for latents [N, z_dim]."""
        if len(z) == 0:
            return np.empty((0, FACE, FACE, 3), np.uint8)
        return np.concatenate(list(self.batches(z, batch_size, progress)))

    def edits(self, spec: object) -> dict[str, float]:
        """'hair_blonde=1.5,brightness=-1' (or a dict) checked against this model's directions."""
        if not spec:
            return {}
        if self.directions is None:
            raise EngineError(f"{self.model_path.name} cannot be steered: {self.directions_note}")
        return self.directions.check(spec) if isinstance(spec, dict) else self.directions.parse(spec)

    def steer(self, z: np.ndarray, edits: object) -> np.ndarray:
        """Latents moved along the edits' directions (checked here); unchanged without edits."""
        edits = self.edits(edits)
        return self.directions.apply(z, edits) if edits else z

    def latents(self, seeds: Sequence[int], psi: float = 1.0, edits: dict[str, float] | None = None) -> np.ndarray:
        """The project's latent rule, truncated by psi, then moved along the edits' directions."""
        return self.steer(latents([check_seed(s) for s in seeds], self.z_dim, check_psi(psi)), edits)

    def faces(self, seeds: Sequence[int], psi: float = 1.0, batch_size: int = 64,
              progress: Progress | None = None, edits: dict[str, float] | None = None) -> np.ndarray:
        return self.render(self.latents(seeds, psi, edits), batch_size, progress)

    def face(self, seed: int, psi: float = 1.0, edits: dict[str, float] | None = None) -> Image.Image:
        return Image.fromarray(self.faces([seed], psi, edits=edits)[0])

    def grid(self, seeds: Sequence[int], cols: int, psi: float = 1.0,
             edits: dict[str, float] | None = None) -> tuple[Image.Image, np.ndarray]:
        """(the grid picture, its cells) for the seeds, row by row."""
        cells = self.faces(seeds, psi, edits=edits)
        return Image.fromarray(make_grid(cells, cols)), cells

    def strip(self, seed: int, name: str, psi: float = 1.0, span: float = 3.0, steps: int = 7) -> np.ndarray:
        """Faces of one seed along one direction, from -span to +span."""
        self.edits({name: span})  # checks the name and the span
        z = self.latents([seed], psi)
        d = self.directions.vectors[self.directions.names.index(name)]
        return self.render(z + np.linspace(-span, span, steps, dtype=np.float32)[:, None] * d)

    def morph(self, seeds: Sequence[int], frames: int, psi: float = 1.0,
              edits: dict[str, float] | None = None) -> np.ndarray:
        """uint8 frames: `frames` per leg, slerp between consecutive seeds' latents, then the last seed."""
        seeds = [check_seed(s) for s in seeds]
        if len(seeds) < 2:
            raise EngineError("a morph needs at least two seeds")
        if frames < 2:
            raise EngineError("a morph needs at least 2 frames")
        return self.render(self.steer(morph_latents(seeds, frames, self.z_dim, check_psi(psi)), edits))

    # ------------------------------------------------------------------ zips

    def write_zip(self, seeds: Sequence[int], out: str | Path, psi: float = 1.0, batch_size: int = 64,
                  progress: Progress | None = None, edits: dict[str, float] | None = None) -> dict:
        """PNGs named seed_NNNNNNNNNN.png plus manifest.json, streamed to `out`.

        Written to a temporary file beside `out` and renamed at the end: a failure leaves nothing.
        PNG encoding of one batch runs in a worker thread while the next batch is generated.
        """
        seeds = [check_seed(s) for s in seeds]
        psi = check_psi(psi)
        edits = self.edits(edits)
        out = Path(out)
        t0 = time.perf_counter()
        digests: set[bytes] = set()

        def write(tmp: str) -> None:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:  # PNGs are compressed already
                pending: tuple[list[int], Future] | None = None  # the batch being encoded
                start = 0
                z = self.steer(latents(seeds, self.z_dim, psi), edits)  # seeds, psi and edits checked above
                for imgs in self.batches(z, batch_size, progress):
                    batch_seeds = seeds[start:start + len(imgs)]
                    start += len(imgs)
                    digests.update(digest(img) for img in imgs)
                    encoded = self._pool.submit(png_batch, imgs)  # encodes while the next batch generates
                    self._flush(zf, pending)
                    pending = (batch_seeds, encoded)
                self._flush(zf, pending)
                zf.writestr("manifest.json", json.dumps(self.manifest(seeds, psi, edits), indent=2))
        atomic_write(out, write)
        seconds = time.perf_counter() - t0
        return {"path": str(out), "count": len(seeds), "distinct": len(digests), "seconds": seconds,
                "images_per_s": len(seeds) / max(seconds, 1e-9), "provider": self.provider}

    @staticmethod
    def _flush(zf: zipfile.ZipFile, pending: tuple[list[int], Future] | None) -> None:
        if pending:
            seeds, encoded = pending
            for seed, data in zip(seeds, encoded.result()):
                zf.writestr(seed_filename(seed), data)

    def manifest(self, seeds: Sequence[int], psi: float, edits: dict[str, float] | None = None) -> dict:
        return {"model": self.model_path.name, "model_sha256": self.sha256, "z_dim": self.z_dim, "psi": psi,
                **({"edits": edits} if edits else {}),
                "provider": self.provider, "latent_rule": self.latent_rule, "seeds": compress_seeds(seeds),
                "count": len(seeds), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    # ------------------------------------------------------------------ the model card

    @property
    def latent_rule(self) -> str:
        """The rule the model was exported with (its metadata), else the project's."""
        return self.metadata.get("latent_rule") or LATENT_RULE

    def card(self) -> dict:
        m = self.metadata

        def js(key: str):
            try:
                return json.loads(m[key]) if m.get(key) else None
            except ValueError:
                return None
        return {"file": str(self.model_path.name), "sha256": self.sha256, "z_dim": self.z_dim,
                "provider": self.provider, "provider_note": self.provider_note,
                "recipe": m.get("recipe", "unknown"), "description": m.get("recipe_description", ""),
                "architecture": js("architecture"), "parameters": m.get("g_parameters", "?"),
                "epochs": m.get("epochs", "?"), "steps": m.get("steps", "?"),
                "train_seconds": m.get("train_seconds", "?"), "hardware": m.get("hardware", "?"),
                "variant": m.get("variant", "?"), "fid": js("fid"), "model_card": m.get("model_card", ""),
                "latent_rule": self.latent_rule, "dataset": js("dataset")}
