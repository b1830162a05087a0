"""What each button and API endpoint does: one callable per button, its input checks (every error names
its field), the work, and the files it hands out. Layout lives in demo/app.py; ENDPOINTS below is the
one table of API names, handlers and concurrency groups that the layout wires.

Inputs arrive as sent (demo/fields.py keeps Gradio from checking them first), so a string in a
slider gets the same one-line message as a number out of range. Rejected requests log one line.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gradio as gr
import numpy as np
from PIL import Image

from core import limits
from core.errors import UserError, quote
from core.images import make_grid, upscale
from core.limits import FACE, LIMITS, MORPH_SCALE
from core.pictures import read_face
from core.seeds import MAX_SEED, check_int, check_psi, check_seed, check_span, parse_seeds
from demo import costs, memory
from demo.jobs import LANE, job_alive
from demo.sweeper import WorkDir
from runtime.menu import ModelMenu
from runtime.writers import WRITERS, animation_formats

log = logging.getLogger("anime_gan.app")
VIEW_SCALE = 8      # 64 px faces shown at 512 px, pixel-crisp
STRIP_SPAN, STRIP_STEPS = 3.0, 7


@dataclass(frozen=True)
class Endpoint:
    handler: str        # Handlers method
    group: str          # concurrency group: single faces never wait behind heavy work
    rule: costs.Rule    # inputs a caller must send, and what a request costs (demo/costs.py)
    public: bool = True  # an API endpoint (else a UI-only event)


# api name -> endpoint; the layout wires each button to its entry, so names, handlers and limits live here.
ENDPOINTS: dict[str, Endpoint] = {
    "face": Endpoint("face", "small", costs.Rule(2, costs.one)),
    "random_face": Endpoint("random_face", "small", costs.Rule(1, costs.one)),
    "grid": Endpoint("grid", "grid", costs.Rule(4, costs.grid)),
    "zip": Endpoint("zip", "zip", costs.Rule(3, costs.zip_count)),
    "morph": Endpoint("morph", "morph", costs.Rule(4, costs.morph)),
    "steer": Endpoint("steer", "small", costs.Rule(3, costs.one)),
    "strip": Endpoint("strip", "small", costs.Rule(3, costs.strip)),
    "invert": Endpoint("invert", "small", costs.Rule(1, costs.invert)),
    "steer_sliders": Endpoint("steer_sliders", "small", costs.Rule(3, costs.one), public=False),
    "about": Endpoint("about", "small", costs.Rule(0, lambda data: 0), public=False),
}
GROUPS = {"small": 8, "grid": 4, "zip": 1, "morph": 1}   # concurrency limit per group
HEAVY_GROUPS = ("zip", "morph")                           # always heavy; large grids are heavy by their cost
COSTING = costs.Costing({e.handler: e.rule for e in ENDPOINTS.values()}, HEAVY_GROUPS,
                        {e.handler: e.group for e in ENDPOINTS.values()})


def rejects(endpoint: str, work: WorkDir | None = None) -> Callable:
    """UserError -> a Gradio error shown to the user, logged as one line without a traceback; and the
    request's files start their lifetime when it is answered."""
    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except UserError as exc:
                log.info("rejected /%s: %s", endpoint, exc)
                raise gr.Error(str(exc), print_exception=False) from None
            finally:
                if work is not None:
                    work.handed_out()
        return inner
    return wrap


class Handlers:
    def __init__(self, menu: ModelMenu, work: WorkDir, max_count: int = LIMITS.zip_faces):
        self.menu, self.work, self.max_count = menu, work, max_count

    # ------------------------------------------------------------------ single faces

    def _one(self, seed, psi, model, edits=None, face_class=None):
        """(seed, psi, checked edits, the face, its PNG file) for one seed of one model."""
        s, p = check_seed(seed), check_psi(psi)
        engine = self.menu.get(model)
        e = engine.edits(edits)
        img = engine.face(s, p, e, face_class)
        return s, p, e, img, WRITERS[".png"].write(img, self.work.new(f"seed_{s:010d}{'_steered' if e else ''}", ".png"))

    def face(self, seed, psi, model=None, face_class=None):
        s, p, _, img, path = self._one(seed, psi, model, face_class=face_class)
        return upscale(img, VIEW_SCALE), str(path), f"**Seed {s}** · psi {p:g}{_class_note(face_class)} · 64x64 PNG below"

    def random_face(self, psi, model=None, face_class=None):
        check_psi(psi)
        s = secrets.randbelow(MAX_SEED + 1)
        return (s, *self.face(s, psi, model, face_class))

    # ------------------------------------------------------------------ many faces

    def grid(self, start, rows, cols, psi, model=None, face_class=None):
        s0 = check_seed(start, "start seed")
        r, c = check_int(rows, "rows", 1, LIMITS.grid_side), check_int(cols, "columns", 1, LIMITS.grid_side)
        p = check_psi(psi)
        limits.check_grid(r, c)
        check_span(s0, r * c)
        seeds = list(range(s0, s0 + r * c))
        engine = self.menu.get(model)
        engine.class_ids(seeds[:1], face_class)
        heavy = r * c >= costs.HEAVY  # a large grid takes the heavy lane like a zip (demo/costs.py)
        with LANE.slot() if heavy else contextlib.nullcontext():
            img, _ = engine.grid(seeds, c, p, cls=face_class)
        path = WRITERS[".png"].write(img, self.work.new(f"grid_{s0}_{r}x{c}", ".png"))
        layout = (f"**{r}x{c} faces**: the cell in row i, column j (from 0) holds seed **{s0} + {c}·i + j**, "
                  f"seeds {s0}–{seeds[-1]}{_class_note(face_class)}. The PNG below has 64 px cells.")
        memory.release()
        return upscale(img, 2 if max(r, c) > 8 else 4), str(path), layout

    def zip(self, count, start, psi, model=None, face_class=None, progress=gr.Progress()):
        n = check_int(count, "count", 1, self.max_count)
        s0, p = check_seed(start, "start seed"), check_psi(psi)
        check_span(s0, n)
        engine = self.menu.get(model)
        engine.class_ids([s0], face_class)
        path = self.work.new(f"faces_{s0}-{s0 + n - 1}", ".zip")
        progress(0, desc="waiting for the heavy lane")
        with LANE.slot():  # held until the work ends, even when the request is cancelled
            progress(0, desc="generating")
            r = WRITERS[".zip"].write(engine, range(s0, s0 + n), path, p, 64,
                                      lambda done, total: progress(done / total, desc=f"{done}/{total} faces"),
                                      None, face_class, cancelled=lambda: not job_alive())
        memory.release()
        return str(path), (f"**{r['distinct']} distinct of {r['count']}** faces (seeds {s0}–{s0 + n - 1}"
                           f"{_class_note(face_class)}) in {r['seconds']:.2f} s, {r['images_per_s']:.0f} images/s "
                           f"on {r['provider']}.")

    def morph(self, seeds_text, frames, fmt, psi, model=None, face_class=None, progress=gr.Progress()):
        seeds = parse_seeds(seeds_text, LIMITS.morph_seeds, "seeds")
        n = check_int(frames, "frames", *LIMITS.morph_frames)
        if fmt not in animation_formats():
            raise UserError(f"format must be {' or '.join(animation_formats())}, got {quote(fmt)}")
        p = check_psi(psi)
        total = limits.check_morph(len(seeds), n, MORPH_SCALE)
        engine = self.menu.get(model)
        engine.class_ids(seeds[:1], face_class)
        progress(0, desc=f"waiting for the heavy lane ({total} frames to make)")  # shown from the first second
        with LANE.slot():
            progress(0.05, desc=f"generating {total} frames")
            imgs = engine.morph(seeds, n, p, cls=face_class)
            if not job_alive():
                raise UserError("cancelled")
            progress(0.5, desc=f"encoding {total} frames as {fmt.upper()}")
            path = WRITERS["." + fmt].write(imgs, self.work.new("morph_" + "-".join(map(str, seeds)), f".{fmt}"),
                                            scale=MORPH_SCALE)
        del imgs
        memory.release()
        caption = (f"**Morph of seeds {' → '.join(map(str, seeds))}**{_class_note(face_class)}: {total} frames "
                   f"({n} per step), {fmt.upper()}, {FACE * MORPH_SCALE} px, psi {p:g}, {path.stat().st_size / 1e6:.1f} MB.")
        return str(path), str(path), caption

    # ------------------------------------------------------------------ steering

    def steer(self, seed, psi, edits, model=None):
        """One face moved along the model's directions; edits as text (API) or {name: strength} (sliders)."""
        s, p, e, img, path = self._one(seed, psi, model, edits)
        moves = ", ".join(f"{k} {v:+g}" for k, v in e.items()) or "no edit"
        return upscale(img, VIEW_SCALE), str(path), f"**Seed {s}** · psi {p:g} · {moves}"

    def steer_sliders(self, seed, psi, model, *strengths):
        return self.steer(seed, psi, dict(zip(self.slider_names, strengths)), model)

    def strip(self, seed, direction, psi, model=None):
        """Seven faces of one seed along one direction, from -3 to +3."""
        s, p = check_seed(seed), check_psi(psi)
        if not isinstance(direction, str):
            raise UserError(f"direction must be a name such as hair_blonde, got {quote(direction)}")
        engine = self.menu.get(model)
        faces = engine.strip(s, direction, p, span=STRIP_SPAN, steps=STRIP_STEPS)
        img = Image.fromarray(make_grid(faces, cols=len(faces)))
        path = WRITERS[".png"].write(img, self.work.new(f"strip_{s}_{direction}", ".png"))
        return upscale(img, 2), str(path), (f"**Seed {s}** along {engine.directions.describe(direction)}; from "
                                            f"{-STRIP_SPAN:g} to {STRIP_SPAN:+g} in {len(faces)} steps")

    def slider_label(self, name: str) -> str:
        """A slider's label: the direction's name, or for a principal one, marked as unnamed."""
        d = self._slider_directions
        return d.label(name) if d else name

    @functools.cached_property
    def slider_names(self) -> list[str]:
        """The directions of the first model that has any (the same names for every shipped model),
        found once: the Steer tab's sliders are made from them and must keep matching them."""
        for name in self.menu.names():
            try:
                d = self.menu.get(name).directions
            except UserError:
                continue
            if d:
                self._slider_directions = d
                return d.named() + d.principal()
        return []

    _slider_directions = None  # the Directions the sliders were made from

    # ------------------------------------------------------------------ a visitor's own face

    def invert(self, picture, then="steer", direction=None, seed=42, model=None):
        """The face nearest a visitor's picture that the model can draw, and a strip from it: along one
        steering direction (-3 to +3), or a morph to a seed. The picture is read (size, format and
        pixel caps: core/pictures.py) and deleted at once; nothing of it is kept."""
        path = uploaded_path(picture)
        try:
            face = read_face(path)
        finally:
            forget_upload(path)
        if then not in ("steer", "morph"):
            raise UserError(f"then must be steer or morph, got {quote(then)}")
        engine = self.menu.get(model)
        z, classes = engine.invert(face[None])
        found = engine.from_latents(z, classes)
        if then == "morph":
            s = check_seed(seed)
            strip = engine.morph_from(z[0], None if classes is None else int(classes[0]), [s], STRIP_STEPS - 1)
            what = f"a morph to seed {s}"
        else:
            if not isinstance(direction, str) or engine.directions is None or direction not in engine.directions.names:
                names = ", ".join(engine.directions.names) if engine.directions else "none"
                raise UserError(f"direction must be one of this model's: {names}; got {quote(direction)}")
            strip = engine.strip_from(z, direction, None if classes is None else np.repeat(classes, STRIP_STEPS),
                                      STRIP_SPAN, STRIP_STEPS)
            what = f"along {engine.directions.describe(direction)}, {-STRIP_SPAN:g} to {STRIP_SPAN:+g}"
        cls = f" · class read: {engine.classes[int(classes[0])]}" if classes is not None else ""
        pictures = [upscale(Image.fromarray(face), VIEW_SCALE // 2), upscale(Image.fromarray(found[0]), VIEW_SCALE // 2),
                    upscale(Image.fromarray(make_grid(strip, cols=len(strip))), 2)]
        return (*pictures, f"**Your picture** (cropped to 64x64) and **the face found**{cls}; below, {what}.")

    # ------------------------------------------------------------------ the model card

    def classes(self, model=None) -> list[str]:
        """The chosen model's classes (empty for an unconditional or unusable one)."""
        try:
            return self.menu.get(model).classes
        except UserError:
            return []

    def about(self, model=None) -> str:
        name = self.menu.resolve(model)
        try:
            engine = self.menu.get(name)
        except UserError as exc:
            return f"### Model card\n\n**{exc}**"
        c, entry = engine.about(), self.menu.entries[name]
        fid = c["fid"] or entry.menu_card.get("fid")
        fid_line = (f"**FID-5k {fid['fid']:.2f}** ({fid.get('protocol', '?')}; real images score {fid.get('floor', '?')})"
                    if fid else "FID: not measured for this file")
        note = "" if c["provider"] == "CUDA" else f" ({c['provider_note']})"
        arch = c["architecture"] or entry.menu_card.get("arch") or {}
        params = c["parameters"] if c["parameters"] != "?" else entry.menu_card.get("g_parameters", "?")
        lines = [
            f"### Model card: {entry.label}",
            f"- Name: `{name}` ({c['variant']} export of recipe **{c['recipe']}**) — {c['description']}",
            f"- Architecture: {arch.get('name', '?')} generator, {params} parameters, z_dim {c['z_dim']}",
            f"- Training: {c['epochs'] + ' epochs, ' if c['epochs'] else ''}{c['steps']} steps, "
            f"{c['train_seconds']} s on {c['hardware']}",
            f"- {fid_line}",
            f"- Classes: {', '.join(c['classes']) if c['classes'] else 'none (unconditional)'}"
            + (f" at class strength {c['class_strength']:g} (the class's weights scaled after training)"
               if "class_strength" in c else ""),
            f"- Latent rule: {c['latent_rule']}",
            f"- File: `{c['file']}`, sha256 `{c['sha256']}`",
            f"- Provider in use: **{c['provider']}**{note}",
            f"- Steering: {', '.join(engine.directions.names) if engine.directions else engine.directions_note}",
        ]
        if entry.menu_card.get("notes"):
            lines.append(f"- Notes: {entry.menu_card['notes']}")
        if entry.menu_card.get("terms"):
            lines.append(f"- Terms: {entry.menu_card['terms']}")
        if c["model_card"]:
            lines.append(f"\n{c['model_card']}")
        return "\n".join(lines)


def uploaded_path(picture) -> Path:
    """The server path of a picture uploaded through this app (Gradio's upload folder), never any
    other file a caller names."""
    path = picture.get("path") if isinstance(picture, dict) else getattr(picture, "path", picture)
    if not isinstance(path, str) or not path:
        raise UserError("picture is empty: upload a face picture (PNG, JPEG, WebP, BMP or GIF)")
    folder = Path(gr.utils.get_upload_folder()).resolve()
    p = Path(path).resolve()
    if folder not in p.parents or not p.is_file():
        raise UserError("picture must be uploaded through this app (a path on the server is not taken)")
    return p


def forget_upload(path: Path) -> None:
    """The uploaded file, and the folder Gradio made for it, gone: nothing of a visitor's picture is kept."""
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass


def _class_note(cls) -> str:
    return f" · class {cls}" if isinstance(cls, str) and cls.strip() and cls.strip().lower() != "any" else ""


def wrapped(handlers: Handlers) -> dict[str, Callable]:
    """Every endpoint's handler as a Gradio function: user errors become one-line messages."""
    return {name: rejects(name, handlers.work)(getattr(handlers, e.handler)) for name, e in ENDPOINTS.items()}
