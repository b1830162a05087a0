"""Output formats, one table: what the CLI's --out may end in, what the app offers, how each is written.

    WRITERS[".zip"]   many faces: PNGs named seed_NNNNNNNNNN.png plus manifest.json, streamed
    WRITERS["/"]      many faces: PNGs into a folder, streamed
    WRITERS[".png"]   one picture: a face, a grid or a strip
    WRITERS[".gif"], WRITERS[".webp"]   an animation (morphs)

A new format is one `@WRITERS.register(suffix)` function here; the CLI's checks and the app's
choices follow from the table. Every file is written under a temporary name and renamed when
complete, so a failure leaves nothing half-written.
"""
from __future__ import annotations

import errno
import json
import time
import zipfile
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from core.errors import UserError
from core.files import atomic_write, atomic_write_bytes
from core.images import ANIMATION_FORMATS, digest, png_batch, save_animation, save_png, seed_filename
from runtime.engine import Engine, Progress

FOLDER = "/"


@dataclass(frozen=True)
class Writer:
    suffix: str
    kind: str            # "faces" (many, streamed) | "picture" | "animation"
    write: Callable
    what: str


WRITERS: dict[str, Writer] = {}


def register(suffix: str, kind: str, what: str):
    def add(fn: Callable) -> Callable:
        WRITERS[suffix] = Writer(suffix, kind, fn, what)
        return fn
    return add


def writer_for(path: Path) -> Writer:
    """The writer for an --out path: by suffix, a folder when it has none."""
    suffix = path.suffix.lower()
    if suffix in WRITERS:
        return WRITERS[suffix]
    if not suffix:
        return WRITERS[FOLDER]
    choices = ", ".join(s if s != FOLDER else "a folder" for s in WRITERS)
    raise UserError(f"--out must be one of: {choices}; got {path.name[:40]!r}")


def animation_formats() -> list[str]:
    """'gif', 'webp': the app's format menu, the CLI's morph suffixes."""
    return [s.lstrip(".") for s, w in WRITERS.items() if w.kind == "animation"]


def _disk_error(exc: OSError, path: Path, done: int, total: int, where: Path) -> UserError:
    why = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    return UserError(f"could not write {path}: {why}; {done} of {total} faces were written to {where}")


def _summary(out: Path, count: int, digests: set, t0: float, engine: Engine) -> dict:
    seconds = time.perf_counter() - t0
    return {"path": str(out), "count": count, "distinct": len(digests), "seconds": seconds,
            "images_per_s": count / max(seconds, 1e-9), "provider": engine.provider}


@register(".zip", "faces", "a zip of PNGs plus manifest.json")
def write_zip(engine: Engine, seeds: Sequence[int], out: Path, psi: float = 1.0, batch_size: int = 64,
              progress: Progress | None = None, edits: dict | None = None, cls: object = None,
              cancelled: Callable[[], bool] = lambda: False, keep_partial: bool = False) -> dict:
    """Streamed: latents, faces and PNGs batch by batch (one batch encodes in a worker thread while
    the next generates), into a temporary file renamed at the end; a failure leaves nothing. A cancel
    (checked before every batch) leaves nothing either, or with keep_partial (the CLI stopped by a
    signal) closes a valid zip of the faces made so far, its manifest saying it is incomplete."""
    out, t0, digests = Path(out), time.perf_counter(), set()
    seeds, done = list(seeds), []
    batches = engine.stream(seeds, psi, batch_size, progress, edits, cls, cancelled)  # checks every input first

    def flush(zf: zipfile.ZipFile, pending: tuple[list[int], Future] | None) -> None:
        if pending:
            for seed, data in zip(pending[0], pending[1].result()):
                zf.writestr(seed_filename(seed), data)
            done.extend(pending[0])

    def write(tmp: str) -> None:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:  # PNGs are compressed already
            pending = None
            for part, imgs in batches:
                digests.update(digest(img) for img in imgs)
                encoded = engine.pool.submit(png_batch, imgs)
                flush(zf, pending)
                pending = (part, encoded)
            flush(zf, pending)
            if cancelled() and not keep_partial:
                raise UserError("cancelled")
            manifest = engine.manifest(done, psi, edits, cls)
            if len(done) < len(seeds):
                manifest.update(complete=False, requested=len(seeds))
            zf.writestr("manifest.json", json.dumps(manifest, indent=2))
    try:
        atomic_write(out, write)
    except OSError as exc:
        raise _disk_error(exc, out, 0, len(seeds), out.parent) from None
    return {**_summary(out, len(done), digests, t0, engine), "requested": len(seeds)}


@register(FOLDER, "faces", "a folder of PNGs")
def write_folder(engine: Engine, seeds: Sequence[int], out: Path, psi: float = 1.0, batch_size: int = 64,
                 progress: Progress | None = None, edits: dict | None = None, cls: object = None,
                 cancelled: Callable[[], bool] = lambda: False, keep_partial: bool = True) -> dict:
    """One PNG per seed, each written atomically; a full disk names the file and how far it got, and
    a cancel stops before the next batch (the faces written stay: each file is complete)."""
    out, t0, digests, done = Path(out), time.perf_counter(), set(), 0
    seeds = list(seeds)
    for part, imgs in engine.stream(seeds, psi, batch_size, progress, edits, cls, cancelled):
        for s, img, data in zip(part, imgs, png_batch(imgs)):
            path = out / seed_filename(s)
            try:
                atomic_write_bytes(path, data)
            except OSError as exc:
                raise _disk_error(exc, path, done, len(seeds), out) from None
            digests.add(digest(img))
            done += 1
    return {**_summary(out, done, digests, t0, engine), "requested": len(seeds)}


@register(".png", "picture", "one picture: a face, a grid or a strip")
def write_picture(img: Image.Image, out: Path) -> Path:
    try:
        return save_png(img, out)
    except OSError as exc:
        raise UserError(f"could not write {out}: {exc.strerror or exc}") from None


def _animation(frames: np.ndarray, out: Path, fps: int = 15, scale: int = 4) -> Path:
    try:
        return save_animation(frames, out, fps=fps, scale=scale)
    except OSError as exc:
        raise UserError(f"could not write {out}: {exc.strerror or exc}") from None


for _suffix in ANIMATION_FORMATS:
    register(_suffix, "animation", f"an animated {_suffix[1:].upper()}")(_animation)
