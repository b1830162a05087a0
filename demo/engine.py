"""The torch-free runtime: an ONNX generator on onnxruntime, and the faces, grids, morphs and zips
made from it. Used by the batch CLI (demo/generate.py) and the web app (demo/app.py).

Only onnxruntime, numpy and pillow are imported, so a Hugging Face Space stays small.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import struct
import tempfile
import time
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "generator.onnx"
MODEL_ENV = "ANIME_GAN_MODEL"
MAX_SEED = 2**32 - 1
IMAGE_SHAPE = (3, 64, 64)
Progress = Callable[[int, int], None]  # (done, total)


class EngineError(ValueError):
    """Bad input or an unusable model; the message is one line meant for the user."""


# ----------------------------------------------------------------------------- seeds and latents

def check_seed(seed: object) -> int:
    """An integer in [0, 2^32 - 1], or EngineError. Accepts ints, integral floats and digit strings."""
    if isinstance(seed, bool):
        raise EngineError(f"seed must be an integer, got {seed!r}")
    if isinstance(seed, float):
        if not np.isfinite(seed) or seed != int(seed):
            raise EngineError(f"seed must be a whole number, got {seed!r}")
        seed = int(seed)
    if isinstance(seed, str):
        s = seed.strip()
        if not re.fullmatch(r"[+-]?\d{1,30}", s):
            raise EngineError(f"seed must be an integer, got {seed[:40]!r}")
        seed = int(s)
    if not isinstance(seed, (int, np.integer)):
        raise EngineError(f"seed must be an integer, got {type(seed).__name__}")
    if not 0 <= int(seed) <= MAX_SEED:
        raise EngineError(f"seed {seed} is outside 0..{MAX_SEED}")
    return int(seed)


def parse_seeds(spec: str, limit: int | None = None) -> list[int]:
    """'0-999', '1,5,9-12' (as StyleGAN's gen_images.py) -> a list of seeds, in order, repeats kept."""
    if not isinstance(spec, str) or not spec.strip():
        raise EngineError("seed list is empty; use e.g. 0-999 or 1,5,9-12")
    seeds: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            a, b = check_seed(m.group(1)), check_seed(m.group(2))
            if b < a:
                raise EngineError(f"seed range {part!r} runs backwards")
            if limit is not None and len(seeds) + (b - a + 1) > limit:
                raise EngineError(f"too many seeds: more than {limit}")
            seeds.extend(range(a, b + 1))
        else:
            seeds.append(check_seed(part))
        if limit is not None and len(seeds) > limit:
            raise EngineError(f"too many seeds: more than {limit}")
    return seeds


def check_psi(psi: object) -> float:
    try:
        value = float(psi)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise EngineError(f"psi must be a number, got {psi!r}") from None
    if not np.isfinite(value) or not 0 < value <= 2:
        raise EngineError(f"psi must be in (0, 2], got {psi!r}")
    return value


def latents(seeds: Sequence[int], z_dim: int, psi: float = 1.0) -> np.ndarray:
    """The project's one latent rule: RandomState(seed).randn(z_dim) as float32, times psi.

    Truncation by scaling toward the origin: the origin is the mean of the prior, so psi < 1
    trades variety for typical, cleaner faces; psi = 1 is the plain rule.
    """
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


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[B, 3, H, W] in [-1, 1] -> [B, H, W, 3] uint8 (same rounding as the trainer)."""
    x = (np.clip(images, -1.0, 1.0) + 1.0) * 127.5
    return np.rint(x).astype(np.uint8).transpose(0, 2, 3, 1)


# ----------------------------------------------------------------------------- the engine

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)),
                                      repr=False)

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, model: str | Path | None = None, device: str = "auto") -> "Engine":
        """model: a path, else $ANIME_GAN_MODEL, else the shipped default. device: auto | cpu | cuda."""
        import onnxruntime as ort

        if device not in ("auto", "cpu", "cuda"):
            raise EngineError(f"device must be auto, cpu or cuda, got {device!r}")
        path = Path(model or os.environ.get(MODEL_ENV) or DEFAULT_MODEL)
        if not path.is_file():
            raise EngineError(f"model file not found: {path}")
        if path.stat().st_size == 0:
            raise EngineError(f"model file is empty: {path}")
        providers, note = cls._providers(ort, device)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        # A CUDA provider that cannot start prints a multi-line banner; we report it in one line below.
        ort.set_default_logger_severity(4)
        try:
            sess = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as exc:  # noqa: BLE001 - protobuf/graph errors vary; the user needs one line
            msg = " ".join(str(exc).split())[:200]
            raise EngineError(f"{path} is not a usable ONNX model: {msg}") from None
        finally:
            ort.set_default_logger_severity(2)
        z_dim = cls._check_io(sess, path)
        meta = dict(sess.get_modelmeta().custom_metadata_map)
        if "z_dim" in meta and meta["z_dim"] != str(z_dim):
            raise EngineError(f"{path}: metadata z_dim {meta['z_dim']} disagrees with the input shape {z_dim}")
        used = sess.get_providers()[0]
        if device == "cuda" and used != "CUDAExecutionProvider":
            raise EngineError("--device cuda: onnxruntime could not start CUDA (CUDA 13 and cuDNN 9 libraries are needed; "
                              "pip install 'onnxruntime-gpu[cuda,cudnn]'); use --device cpu or auto")
        if device == "auto" and used != "CUDAExecutionProvider" and note == "CUDA":
            note = ("CUDA was available to onnxruntime but could not start (missing CUDA 13 / cuDNN 9 libraries?); "
                    "running on CPU")
        return cls(sess, path, z_dim, meta, used.replace("ExecutionProvider", ""), note, _sha256(path),
                   sess.get_inputs()[0].name)

    @staticmethod
    def _providers(ort, device: str) -> tuple[list, str]:
        available = ort.get_available_providers()
        cuda_ok = "CUDAExecutionProvider" in available
        if device == "cpu":
            return ["CPUExecutionProvider"], "CPU requested"
        if device == "cuda" and not cuda_ok:
            raise EngineError("--device cuda: this onnxruntime has no CUDA provider (install onnxruntime-gpu on "
                              "Linux or Windows with an NVIDIA GPU); use --device cpu or auto")
        if not cuda_ok:
            return ["CPUExecutionProvider"], "no CUDA provider in this onnxruntime build"
        preload = getattr(ort, "preload_dlls", None)
        if preload:  # loads CUDA/cuDNN from the nvidia-* wheels, when installed, before the session needs them
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    preload()
            except Exception:  # noqa: BLE001 - missing wheels: the session then falls back and we say so
                pass
        # HEURISTIC avoids cuDNN's exhaustive search, which makes the first run of every batch shape slow.
        cuda = ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})
        return [cuda, "CPUExecutionProvider"], "CUDA"

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

    def faces(self, seeds: Sequence[int], psi: float = 1.0, batch_size: int = 64,
              progress: Progress | None = None) -> np.ndarray:
        seeds = [check_seed(s) for s in seeds]
        if not seeds:
            return np.empty((0, 64, 64, 3), np.uint8)
        return np.concatenate(list(self.batches(latents(seeds, self.z_dim, check_psi(psi)), batch_size, progress)))

    def face(self, seed: int, psi: float = 1.0) -> Image.Image:
        return Image.fromarray(self.faces([seed], psi)[0])

    def grid(self, seeds: Sequence[int], cols: int, psi: float = 1.0, pad: int = 2) -> Image.Image:
        imgs = self.faces(seeds, psi)
        return Image.fromarray(make_grid(imgs, cols, pad))

    def morph(self, seeds: Sequence[int], frames: int, psi: float = 1.0, loop: bool = False) -> list[Image.Image]:
        """`frames` frames per leg, slerp between consecutive seeds' latents (and back when loop)."""
        seeds = [check_seed(s) for s in seeds]
        if len(seeds) < 2:
            raise EngineError("a morph needs at least two seeds")
        if frames < 2:
            raise EngineError("a morph needs at least 2 frames")
        keys = latents(seeds + ([seeds[0]] if loop else []), self.z_dim, check_psi(psi))
        z = [slerp(a, b, t) for a, b in zip(keys, keys[1:]) for t in np.linspace(0, 1, frames, endpoint=False)]
        z.append(keys[-1])
        imgs = np.concatenate(list(self.batches(np.stack(z))))
        return [Image.fromarray(x) for x in imgs]

    # ------------------------------------------------------------------ zips

    def write_zip(self, seeds: Sequence[int], out: str | Path, psi: float = 1.0, batch_size: int = 64,
                  progress: Progress | None = None) -> dict:
        """PNGs named seed_NNNNNNNNNN.png plus manifest.json, streamed to `out`.

        Written to a temporary file beside `out` and renamed at the end: a failure leaves nothing.
        PNG encoding of one batch runs in a worker thread while the next batch is generated.
        """
        seeds = [check_seed(s) for s in seeds]
        psi = check_psi(psi)
        out = Path(out)
        t0 = time.perf_counter()
        digests: set[bytes] = set()
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
        os.close(fd)
        try:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:  # PNGs are compressed already
                pending = None  # (seeds, future PNGs) of the batch being encoded
                z = latents(seeds, self.z_dim, psi)
                start = 0
                for imgs in self.batches(z, batch_size, progress):
                    batch_seeds = seeds[start:start + len(imgs)]
                    start += len(imgs)
                    digests.update(hashlib.sha1(img.tobytes()).digest() for img in imgs)
                    encoded = self._pool.submit(png_batch, imgs)  # encodes while the next batch generates
                    self._flush(zf, pending)
                    pending = (batch_seeds, encoded)
                self._flush(zf, pending)
                manifest = self.manifest(seeds, psi)
                zf.writestr("manifest.json", json.dumps(manifest, indent=2))
            os.chmod(tmp, 0o644)
            os.replace(tmp, out)
        finally:
            Path(tmp).unlink(missing_ok=True)
        seconds = time.perf_counter() - t0
        return {"path": str(out), "count": len(seeds), "distinct": len(digests), "seconds": seconds,
                "images_per_s": len(seeds) / max(seconds, 1e-9), "provider": self.provider}

    @staticmethod
    def _flush(zf: zipfile.ZipFile, pending: tuple | None) -> None:
        if pending:
            seeds, encoded = pending
            for seed, data in zip(seeds, encoded.result()):
                zf.writestr(seed_filename(seed), data)

    def manifest(self, seeds: Sequence[int], psi: float) -> dict:
        return {"model": self.model_path.name, "model_sha256": self.sha256, "z_dim": self.z_dim, "psi": psi,
                "provider": self.provider, "latent_rule": "numpy RandomState(seed).randn(z_dim) as float32, times psi",
                "seeds": compress_seeds(seeds), "count": len(seeds),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    # ------------------------------------------------------------------ the model card

    def card(self) -> dict:
        m = self.metadata
        fid = json.loads(m["fid"]) if m.get("fid") else None
        return {"file": str(self.model_path.name), "sha256": self.sha256, "z_dim": self.z_dim,
                "provider": self.provider, "provider_note": self.provider_note,
                "recipe": m.get("recipe", "unknown"), "description": m.get("recipe_description", ""),
                "epochs": m.get("epochs", "?"), "steps": m.get("steps", "?"),
                "train_seconds": m.get("train_seconds", "?"), "hardware": m.get("hardware", "?"),
                "variant": m.get("variant", "?"), "fid": fid, "model_card": m.get("model_card", ""),
                "dataset": json.loads(m["dataset"]) if m.get("dataset") else None}


# ----------------------------------------------------------------------------- image helpers

def seed_filename(seed: int) -> str:
    return f"seed_{seed:010d}.png"


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_batch(images: np.ndarray) -> list[bytes]:
    """Ordinary 8-bit RGB PNG files for uint8 images [b, h, w, 3], written with zlib directly.

    Pillow spends most of its PNG time choosing a filter for every row. For these small, noisy
    faces the "Up" filter on every row with Huffman-only deflate gives files of the same size
    (about 9 KiB) in a third of the time, which is what keeps a 1,000-face zip close to the bare
    generation time. The filter runs on the whole batch at once.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise EngineError(f"PNG encoding needs uint8 images [b, h, w, 3], got {images.dtype} {list(images.shape)}")
    b, h, w, c = images.shape
    rows = images.reshape(b, h, w * c)
    filtered = np.empty((b, h, w * c + 1), np.uint8)
    filtered[:, :, 0] = 2  # filter type Up: each byte minus the one above it (the row above row 0 is zeros)
    filtered[:, 0, 1:] = rows[:, 0]
    np.subtract(rows[:, 1:], rows[:, :-1], out=filtered[:, 1:, 1:])  # uint8 wraps modulo 256, as PNG defines
    head = _PNG_SIGNATURE + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    tail = _png_chunk(b"IEND", b"")
    out = []
    for f in filtered:
        z = zlib.compressobj(6, zlib.DEFLATED, 15, 9, zlib.Z_HUFFMAN_ONLY)
        out.append(head + _png_chunk(b"IDAT", z.compress(f.tobytes()) + z.flush()) + tail)
    return out


def upscale(img: Image.Image, factor: int = 4) -> Image.Image:
    """Pixel-crisp enlargement for viewing (nearest neighbour: no invented detail)."""
    return img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)


def make_grid(images: np.ndarray, cols: int, pad: int = 2, fill: int = 255) -> np.ndarray:
    b, h, w, c = images.shape
    rows = -(-b // cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), fill, dtype=np.uint8)
    for i, img in enumerate(images):
        r, k = divmod(i, cols)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + k * (w + pad):pad + k * (w + pad) + w] = img
    return grid


def save_animation(frames: list[Image.Image], out: str | Path, fps: int = 12, scale: int = 2) -> Path:
    """Animated GIF or WebP (by suffix), looping forever; written atomically."""
    out = Path(out)
    fmt = {".gif": "GIF", ".webp": "WEBP"}.get(out.suffix.lower())
    if fmt is None:
        raise EngineError(f"animation must be .gif or .webp, got {out.name!r}")
    frames = [upscale(f, scale) if scale > 1 else f for f in frames]
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    os.close(fd)
    try:
        kwargs = {"lossless": True} if fmt == "WEBP" else {"optimize": False}
        frames[0].save(tmp, format=fmt, save_all=True, append_images=frames[1:], duration=int(1000 / fps),
                       loop=0, **kwargs)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


def compress_seeds(seeds: Iterable[int]) -> str:
    """[0, 1, 2, 3, 7] -> '0-3,7' (the same syntax parse_seeds reads)."""
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


def distinct(images: np.ndarray) -> int:
    return len({hashlib.sha1(img.tobytes()).digest() for img in images})
