"""The torch-free runtime: one ONNX generator on onnxruntime, and the faces, grids, strips and morphs
made from it. Files are written by runtime/writers.py; the model menu is runtime/menu.py.

A conditional generator takes a second input, `class` (int64 [batch]); its class names are in the
model's metadata. Every method takes `cls`: a class name, or None / "any", for which each seed draws
its own class with the training data's frequencies (core.seeds.seed_classes).

Only onnxruntime, numpy and pillow are imported, so a Hugging Face Space stays small.
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from core.errors import UserError
from core.files import sha256_file
from core.images import make_grid, to_uint8
from core.limits import FACE
from core.ort import model_classes, open_session
from core.seeds import (
    ANY_CLASS,
    LATENT_RULE,
    check_class,
    check_psi,
    check_seed,
    compress_seeds,
    latents,
    morph_between,
    morph_latents,
    seed_classes,
)
from core.steering import Directions, directions_path
from runtime.settings import DEFAULT_NAME, encoder_of, models_dir

IMAGE_SHAPE = (3, FACE, FACE)
Progress = Callable[[int, int], None]  # (done, total)


class EngineError(UserError):
    """Bad input or an unusable model; the message is one line meant for the user."""


def _dim(d) -> int | str:
    return d if isinstance(d, int) else str(d)


def _json(meta: dict[str, str], key: str):
    try:
        return json.loads(meta[key]) if meta.get(key) else None
    except ValueError:
        return None


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
    classes: list[str] = field(default_factory=list)   # class names of a conditional model, in index order
    class_weights: list[float] = field(default_factory=list)  # the training data's class frequencies
    directions: Directions | None = None   # from NAME.directions.json beside the model, when there is one
    directions_note: str = ""
    threads: int = 0                        # CPU threads per run (the encoder's session takes as many)
    _encoder: object = field(default=None, repr=False)  # NAME.encoder.onnx's session, opened on first use
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)),
                                     repr=False)

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, model: str | Path | None = None, device: str = "auto", threads: int = 0) -> "Engine":
        """model: a path (default: the models folder's generator). device: auto | cpu | cuda. threads: CPU
        threads per run (0: onnxruntime's choice, every core; a server leaves some to other requests)."""
        path = Path(model or models_dir() / f"{DEFAULT_NAME}.onnx")
        if not path.is_file():
            raise EngineError(f"model file not found: {path}")
        if path.stat().st_size == 0:
            raise EngineError(f"model file is empty: {path}")
        s = open_session(path, device, threads)
        z_dim, conditional = cls._check_io(s.session, path)
        meta = dict(s.session.get_modelmeta().custom_metadata_map)
        if "z_dim" in meta and meta["z_dim"] != str(z_dim):
            raise EngineError(f"{path}: metadata z_dim {meta['z_dim']} disagrees with the input shape {z_dim}")
        try:
            classes, weights = model_classes(s.session)
        except UserError as exc:
            raise EngineError(f"{path}: {exc}") from None
        sha = sha256_file(path)
        directions, note = None, "no directions file beside the model (python -m export.directions measures them)"
        if directions_path(path).is_file():
            try:
                directions, note = Directions.load(directions_path(path), z_dim, sha), ""
            except UserError as exc:  # steering is off for this model; everything else works
                note = str(exc)
        return cls(s.session, path, z_dim, meta, s.provider, s.note, sha, s.session.get_inputs()[0].name,
                   classes, weights, directions, note, threads=threads)

    @staticmethod
    def _check_io(sess, path: Path) -> tuple[int, bool]:
        ins, outs = sess.get_inputs(), sess.get_outputs()
        if len(ins) not in (1, 2) or len(outs) != 1:
            raise EngineError(f"{path} is not a generator: expected one or two inputs and one output, "
                              f"got {len(ins)} and {len(outs)}")
        i, o = ins[0], outs[0]
        if i.type != "tensor(float)" or len(i.shape) != 2 or not isinstance(i.shape[1], int) or i.shape[1] < 1:
            raise EngineError(f"{path} is not a generator: input must be float [batch, z_dim], got {i.type} "
                              f"{[_dim(d) for d in i.shape]}")
        if len(ins) == 2 and (ins[1].name != "class" or ins[1].type != "tensor(int64)" or len(ins[1].shape) != 1):
            raise EngineError(f"{path}: a second input must be `class`, int64 [batch], got {ins[1].name} {ins[1].type}")
        if o.type != "tensor(float)" or len(o.shape) != 4 or tuple(o.shape[1:]) != IMAGE_SHAPE:
            raise EngineError(f"{path} is not a 64x64 generator: output must be float [batch, 3, 64, 64], "
                              f"got {o.type} {[_dim(d) for d in o.shape]}")
        return int(i.shape[1]), len(ins) == 2

    # ------------------------------------------------------------------ inputs

    def class_of(self, cls: object) -> int | None:
        """A class name checked against this model's classes (None: each seed draws its own)."""
        return check_class(cls, self.classes)

    def class_ids(self, seeds: Sequence[int], cls: object = None) -> np.ndarray | None:
        """The class of each seed's face: the asked class, or each seed's own draw; None when unconditional."""
        if not self.classes:
            self.class_of(cls)  # a class for a model without classes is an error, "any" is not
            return None
        k = self.class_of(cls)
        if k is not None:
            return np.full(len(seeds), k, np.int64)
        return seed_classes(seeds, self.z_dim, self.class_weights)

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

    # ------------------------------------------------------------------ generation

    def run(self, z: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        """[B, z_dim] float32 (and [B] int64 classes) -> [B, 3, 64, 64] float32 in [-1, 1]."""
        feeds = {self.input_name: np.ascontiguousarray(z, np.float32)}
        if self.classes:
            if y is None:
                raise EngineError(f"{self.model_path.name} is conditional: every latent needs a class")
            feeds["class"] = np.ascontiguousarray(y, np.int64)
        return self.session.run(None, feeds)[0]

    def batches(self, z: np.ndarray, y: np.ndarray | None = None, batch_size: int = 64,
                progress: Progress | None = None) -> Iterator[np.ndarray]:
        """uint8 [b, 64, 64, 3] per fixed-size batch: memory stays flat for any count."""
        if batch_size < 1:
            raise EngineError(f"batch size must be at least 1, got {batch_size}")
        for i in range(0, len(z), batch_size):
            yield to_uint8(self.run(z[i:i + batch_size], None if y is None else y[i:i + batch_size]))
            if progress:
                progress(min(i + batch_size, len(z)), len(z))

    def render(self, z: np.ndarray, y: np.ndarray | None = None, batch_size: int = 64,
               progress: Progress | None = None) -> np.ndarray:
        """uint8 faces [N, 64, 64, 3] for latents [N, z_dim] (and their classes)."""
        if len(z) == 0:
            return np.empty((0, FACE, FACE, 3), np.uint8)
        return np.concatenate(list(self.batches(z, y, batch_size, progress)))

    def faces(self, seeds: Sequence[int], psi: float = 1.0, batch_size: int = 64, progress: Progress | None = None,
              edits: dict[str, float] | None = None, cls: object = None) -> np.ndarray:
        seeds = [check_seed(s) for s in seeds]
        return self.render(self.latents(seeds, psi, edits), self.class_ids(seeds, cls), batch_size, progress)

    def stream(self, seeds: Sequence[int], psi: float = 1.0, batch_size: int = 64, progress: Progress | None = None,
               edits: dict[str, float] | None = None, cls: object = None,
               stopped: Callable[[], bool] = lambda: False) -> Iterator[tuple[list[int], np.ndarray]]:
        """(seeds, faces) batch by batch, latents made per batch: a million faces in flat memory.
        Every input is checked before the first batch is made; `stopped()` is asked before every
        batch, the first included, so a stop that comes as the work starts makes no batch at all."""
        psi, edits, k = check_psi(psi), self.edits(edits), self.class_of(cls)
        seeds = [check_seed(s) for s in seeds]
        if batch_size < 1:
            raise EngineError(f"batch size must be at least 1, got {batch_size}")
        for i in range(0, len(seeds), batch_size):
            if stopped():
                return
            part = seeds[i:i + batch_size]
            yield part, to_uint8(self.run(self.steer(latents(part, self.z_dim, psi), edits),
                                          self.class_ids(part, None if k is None else self.classes[k])))
            if progress:
                progress(min(i + batch_size, len(seeds)), len(seeds))

    def face(self, seed: int, psi: float = 1.0, edits: dict[str, float] | None = None, cls: object = None) -> Image.Image:
        return Image.fromarray(self.faces([seed], psi, edits=edits, cls=cls)[0])

    def grid(self, seeds: Sequence[int], cols: int, psi: float = 1.0, edits: dict[str, float] | None = None,
             cls: object = None) -> tuple[Image.Image, np.ndarray]:
        """(the grid picture, its cells) for the seeds, row by row."""
        cells = self.faces(seeds, psi, edits=edits, cls=cls)
        return Image.fromarray(make_grid(cells, cols)), cells

    def strip(self, seed: int, name: str, psi: float = 1.0, span: float = 3.0, steps: int = 7,
              cls: object = None) -> np.ndarray:
        """Faces of one seed along one direction, from -span to +span."""
        return self.strip_from(self.latents([seed], psi), name, self.class_ids([check_seed(seed)] * steps, cls),
                               span, steps)

    def strip_from(self, z: np.ndarray, name: str, classes: np.ndarray | None = None, span: float = 3.0,
                   steps: int = 7) -> np.ndarray:
        """Faces of one latent [1, z_dim] (a seed's, an inverted face's) along one direction, from
        -span to +span; a conditional model's classes [steps] as in from_latents."""
        self.edits({name: span})  # checks the name and the span
        d = self.directions.vectors[self.directions.names.index(name)]
        return self.from_latents(z + np.linspace(-span, span, steps, dtype=np.float32)[:, None] * d, classes)

    def from_latents(self, z: np.ndarray, classes: np.ndarray | None = None, edits: dict[str, float] | None = None) -> np.ndarray:
        """uint8 faces of given latents [B, z_dim] (an inverted face's, say), moved along the edits;
        a conditional model's classes [B] default to class 0."""
        y = classes if classes is not None or not self.classes else np.zeros(len(z), np.int64)
        return self.render(self.steer(np.asarray(z, np.float32), edits), y)

    def morph_from(self, z0: np.ndarray, cls0: int | None, seeds: Sequence[int], frames: int,
                   psi: float = 1.0) -> np.ndarray:
        """uint8 frames from a latent (an inverted face's) through the seeds' faces, as morph() does."""
        keys = np.concatenate([np.asarray(z0, np.float32)[None], latents([check_seed(s) for s in seeds], self.z_dim,
                                                                          check_psi(psi))])
        z = morph_between(keys, frames)
        return self.render(z, None if not self.classes else np.full(len(z), cls0 or 0, np.int64))

    def morph(self, seeds: Sequence[int], frames: int, psi: float = 1.0,
              edits: dict[str, float] | None = None, cls: object = None) -> np.ndarray:
        """uint8 frames: `frames` per leg, slerp between consecutive seeds' latents, then the last seed.
        A conditional model keeps one class for the whole morph (the asked one, or the first seed's)."""
        seeds = [check_seed(s) for s in seeds]
        if len(seeds) < 2:
            raise EngineError("a morph needs at least two seeds")
        if frames < 2:
            raise EngineError("a morph needs at least 2 frames")
        z = self.steer(morph_latents(seeds, frames, self.z_dim, check_psi(psi)), edits)
        first = self.class_ids(seeds[:1], cls)
        return self.render(z, None if first is None else np.full(len(z), first[0], np.int64))

    # ------------------------------------------------------------------ inversion

    @property
    def encoder_path(self) -> Path:
        return encoder_of(self.model_path)

    def encoder(self):
        """The inversion encoder's session (opened once); EngineError when the model has none or its
        encoder belongs to another generator."""
        if self._encoder is None:
            if not self.encoder_path.is_file():
                raise EngineError(f"{self.model_path.name} has no encoder beside it ({self.encoder_path.name}): "
                                  f"python -m trainer.encoder trains one (docs/inversion.md)")
            s = open_session(self.encoder_path, "cpu" if self.provider == "CPU" else "auto", self.threads)
            meta = s.session.get_modelmeta().custom_metadata_map
            if meta.get("generator_sha256") != self.sha256 or meta.get("z_dim") != str(self.z_dim):
                raise EngineError(f"{self.encoder_path.name} was made for another model ({meta.get('generator', '?')}, "
                                  f"sha256 {meta.get('generator_sha256', '?')[:12]}), not {self.model_path.name}")
            self._encoder = s.session
        return self._encoder

    def invert(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Faces uint8 [B, 64, 64, 3] -> (their latents [B, z_dim], their classes [B] or None): the
        encoder's reading, which the generator draws back as the face nearest it can make."""
        x = np.ascontiguousarray(faces.astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0)
        out = self.encoder().run(None, {"image": x})
        return out[0].astype(np.float32), (out[1].argmax(1).astype(np.int64) if self.classes and len(out) > 1 else None)

    # ------------------------------------------------------------------ descriptions

    def manifest(self, seeds: Sequence[int], psi: float, edits: dict[str, float] | None = None,
                 cls: object = None) -> dict:
        extra = {}
        if edits:
            extra["edits"] = edits
        if self.classes:
            extra["class"] = cls if self.class_of(cls) is not None else f"{ANY_CLASS} (each seed draws its own)"
        return {"model": self.model_path.name, "model_sha256": self.sha256, "z_dim": self.z_dim, "psi": psi, **extra,
                "provider": self.provider, "latent_rule": self.latent_rule, "seeds": compress_seeds(seeds),
                "count": len(seeds), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    @property
    def latent_rule(self) -> str:
        """The rule the model was exported with (its metadata), else the project's."""
        return self.metadata.get("latent_rule") or LATENT_RULE

    def about(self) -> dict:
        """What the model's ONNX metadata says about it (its recipe, training, FID, parity, classes;
        the run card is generator.json, the menu card NAME.json beside the model)."""
        m = self.metadata
        return {"file": str(self.model_path.name), "sha256": self.sha256, "z_dim": self.z_dim,
                "provider": self.provider, "provider_note": self.provider_note,
                "recipe": m.get("recipe", "unknown"), "description": m.get("recipe_description", ""),
                "architecture": _json(m, "architecture"), "parameters": m.get("g_parameters", "?"),
                "epochs": m.get("epochs", "?"), "steps": m.get("steps", "?"),
                "train_seconds": m.get("train_seconds", "?"), "hardware": m.get("hardware", "?"),
                "variant": m.get("variant", "?"), "fid": _json(m, "fid"), "model_card": m.get("model_card", ""),
                "latent_rule": self.latent_rule, "dataset": _json(m, "dataset"), "classes": self.classes,
                **({"class_strength": float(m["class_strength"])} if "class_strength" in m else {})}
