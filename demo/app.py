"""The face studio: a Gradio app over the ONNX generator (CUDA when there, CPU otherwise).

    python demo/app.py                     # http://127.0.0.1:7860
    GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT=8080 python demo/app.py
    ANIME_GAN_MODEL=my.onnx ANIME_GAN_DEVICE=cpu python demo/app.py

Every tab is also an API endpoint (see README: gradio_client).
"""
from __future__ import annotations

import os
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import gradio as gr  # noqa: E402
from PIL import Image  # noqa: E402

from demo.engine import (MAX_SEED, Engine, EngineError, check_psi, make_grid, parse_seeds,  # noqa: E402
                         save_animation, upscale)

MAX_COUNT = int(os.environ.get("ANIME_GAN_MAX_COUNT", "1000"))
MAX_GRID, MIN_FRAMES, MAX_FRAMES, MAX_MORPH_SEEDS = 16, 2, 120, 16
FILE_TTL_S = int(os.environ.get("ANIME_GAN_FILE_TTL", "900"))  # how long made files stay downloadable
SESSIONS = int(os.environ.get("ANIME_GAN_SESSIONS", "256"))  # sessions whose Gradio state is kept in memory
VIEW_SCALE = 8  # 64 px faces shown at 512 px, pixel-crisp


# ----------------------------------------------------------------------------- validation

def _int_in(value, name: str, lo: int, hi: int) -> int:
    if value is None or isinstance(value, bool) or (isinstance(value, str) and not value.strip()):
        raise gr.Error(f"{name} is empty; enter a whole number from {lo} to {hi}")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a whole number, got {str(value)[:40]!r}") from None
    if f != f or f in (float("inf"), float("-inf")) or f != int(f):
        raise gr.Error(f"{name} must be a whole number, got {str(value)[:40]!r}")
    if not lo <= int(f) <= hi:
        raise gr.Error(f"{name} must be from {lo} to {hi}, got {int(f)}")
    return int(f)


def _seed(value, name: str = "seed") -> int:
    return _int_in(value, name, 0, MAX_SEED)


def _psi(value) -> float:
    try:
        return check_psi(value)
    except EngineError as exc:
        raise gr.Error(str(exc)) from None


# ----------------------------------------------------------------------------- files

class WorkDir:
    """One temporary folder for the files the app makes; files older than the TTL are swept.

    It also sweeps the copies Gradio serves from its own cache. Gradio's delete_cache does that
    too, but its scheduled task iterates the live set of cached paths while request threads add
    to it; under load that raises "Set changed size during iteration" once, the task dies, and
    the cache then grows for the life of the server. Ages come from a monotonic clock kept in
    memory, not from file timestamps, which some file systems set from another clock.
    """

    def __init__(self, ttl_s: int = FILE_TTL_S):
        # Inside Gradio's own cache folder by default: one folder for everything, and Gradio serves
        # files from there as they are instead of copying each zip and animation once more.
        root = os.environ.get("ANIME_GAN_WORKDIR") or gr.utils.get_upload_folder()
        Path(root).mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix="anime-gan-app-", dir=root))
        self.ttl_s = ttl_s
        self._made: dict[Path, float] = {}
        self._cached: dict[str, tuple[float, float]] = {}  # Gradio copy -> (first seen, its mtime then)
        self._file_sets: list[set[str]] = []
        self._keep: Callable[[], set[str]] = set
        self._lock = threading.Lock()
        # Sweep in the background too, so files go even when nobody makes new ones.
        threading.Thread(target=self._sweeper, daemon=True, name="workdir-sweeper").start()

    def _sweeper(self) -> None:
        while self.path.is_dir():
            time.sleep(max(1.0, self.ttl_s / 3))
            self.sweep()

    def adopt(self, file_sets: list[set[str]], keep: Callable[[], set[str]] = set) -> None:
        """Also sweep the files named in Gradio's per-component cache sets, except those keep() names."""
        self._file_sets, self._keep = file_sets, keep

    def new(self, stem: str, suffix: str) -> Path:
        self.sweep()
        path = self.path / f"{stem}-{secrets.token_hex(6)}{suffix}"
        with self._lock:
            self._made[path] = time.monotonic()
        return path

    def sweep(self) -> int:
        removed, now = 0, time.monotonic()
        with self._lock:
            for path in [p for p, t in self._made.items() if now - t > self.ttl_s]:
                del self._made[path]
                removed += _unlink(path)
            removed += self._sweep_cached(now)
        return removed

    def _sweep_cached(self, now: float) -> int:
        removed, live, keep = 0, set(), self._keep()
        for file_set in list(self._file_sets):
            for name in set(file_set) - keep:  # set(...) of a set is one C call: safe while threads add
                live.add(name)
                try:
                    mtime = os.stat(name).st_mtime
                except OSError:
                    file_set.discard(name)
                    continue
                first, seen_mtime = self._cached.setdefault(name, (now, mtime))
                if mtime != seen_mtime:  # Gradio touches a copy it hands out again: its life restarts
                    self._cached[name] = (now, mtime)
                elif now - first > self.ttl_s:
                    removed += _unlink(Path(name))
                    file_set.discard(name)
                    live.discard(name)
        for name in set(self._cached) - live:
            del self._cached[name]
        return removed


def _unlink(path: Path) -> int:
    try:
        path.unlink()
        return 1
    except FileNotFoundError:
        return 0


# ----------------------------------------------------------------------------- the app

def build_app(engine: Engine, max_count: int = MAX_COUNT) -> gr.Blocks:
    work = WorkDir()

    def face(seed, psi):
        s, p = _seed(seed), _psi(psi)
        img = engine.face(s, p)
        path = work.new(f"seed_{s:010d}", ".png")
        img.save(path)
        return upscale(img, VIEW_SCALE), str(path), f"**Seed {s}** · psi {p:g} · 64x64 PNG below"

    def random_face(psi):
        s = secrets.randbelow(MAX_SEED + 1)
        return (s, *face(s, psi))

    def grid(start, rows, cols, psi):
        s0 = _seed(start, "start seed")
        r, c = _int_in(rows, "rows", 1, MAX_GRID), _int_in(cols, "columns", 1, MAX_GRID)
        p = _psi(psi)
        if s0 + r * c - 1 > MAX_SEED:
            raise gr.Error(f"start seed too large: the grid would pass {MAX_SEED}")
        seeds = list(range(s0, s0 + r * c))
        faces = engine.faces(seeds, p)
        img = Image.fromarray(make_grid(faces, c))
        path = work.new(f"grid_{s0}_{r}x{c}", ".png")
        img.save(path)
        cells = [(Image.fromarray(f), f"seed {s}") for s, f in zip(seeds, faces)]
        layout = f"Cell (row i, column j) holds seed **{s0} + {c}·i + j** (from 0): seeds {s0}–{seeds[-1]}."
        return upscale(img, 2 if max(r, c) > 8 else 4), str(path), cells, layout

    def zip_faces(count, start, psi, progress=gr.Progress()):
        n = _int_in(count, "count", 1, max_count)
        s0, p = _seed(start, "start seed"), _psi(psi)
        if s0 + n - 1 > MAX_SEED:
            raise gr.Error(f"start seed too large: the seeds would pass {MAX_SEED}")
        path = work.new(f"faces_{s0}-{s0 + n - 1}", ".zip")
        progress(0, desc="generating")
        r = engine.write_zip(range(s0, s0 + n), path, p,
                             progress=lambda done, total: progress(done / total, desc=f"{done}/{total} faces"))
        summary = (f"**{r['distinct']} distinct of {r['count']}** faces (seeds {s0}–{s0 + n - 1}) in "
                   f"{r['seconds']:.2f} s, {r['images_per_s']:.0f} images/s on {r['provider']}.")
        return str(path), summary

    def morph(seeds_text, frames, fmt, psi):
        if not isinstance(seeds_text, str):
            raise gr.Error("seeds must be text such as 3,7,11")
        try:
            seeds = parse_seeds(seeds_text, MAX_MORPH_SEEDS)
        except EngineError as exc:
            raise gr.Error(str(exc)) from None
        if len(seeds) < 2:
            raise gr.Error("a morph needs at least two seeds, e.g. 3,7")
        n = _int_in(frames, "frames", MIN_FRAMES, MAX_FRAMES)
        if fmt not in ("gif", "webp"):
            raise gr.Error("format must be gif or webp")
        p = _psi(psi)
        imgs = engine.morph(seeds, n, p)
        path = save_animation(imgs, work.new("morph_" + "-".join(map(str, seeds)), f".{fmt}"), scale=4)
        return str(path), str(path), [(im, f"frame {i}") for i, im in enumerate(imgs)]

    def about_md() -> str:
        c = engine.card()
        fid = c["fid"]
        fid_line = (f"**FID {fid['fid']:.2f}** ({fid.get('protocol', '?')}; real images score {fid.get('floor', '?')})"
                    if fid else "FID: not measured for this file")
        note = "" if c["provider"] == "CUDA" else f" ({c['provider_note']})"
        return "\n".join([
            "### Model card",
            f"- Recipe: **{c['recipe']}** — {c['description']}",
            f"- Training: {c['epochs']} epochs, {c['steps']} steps, {c['train_seconds']} s on {c['hardware']}",
            f"- {fid_line}",
            f"- Export variant: {c['variant']}; latent z = RandomState(seed).randn({c['z_dim']}) as float32",
            f"- File: `{c['file']}`, sha256 `{c['sha256']}`",
            f"- Provider in use: **{c['provider']}**{note}",
            "" if not c["model_card"] else f"\n{c['model_card']}",
        ])

    with gr.Blocks(title="Anime face studio", delete_cache=(max(2, FILE_TTL_S // 3), FILE_TTL_S)) as app:
        gr.Markdown("# Anime face studio\nEvery face comes from a seed: the same seed gives the same face "
                    f"everywhere (CLI, app, API). Running on **{engine.provider}**.")
        with gr.Tab("Face"):
            with gr.Row():
                with gr.Column(scale=1):
                    seed = gr.Number(value=42, label=f"Seed (0 to {MAX_SEED})", elem_id="seed")
                    psi = gr.Slider(0.05, 2.0, value=1.0, step=0.05, label="Truncation psi (1 = off; lower = cleaner, less varied)")
                    with gr.Row():
                        go = gr.Button("Generate", variant="primary", elem_id="generate")
                        rnd = gr.Button("Random seed", elem_id="random")
                    caption = gr.Markdown(label="caption")
                    png = gr.File(label="64x64 PNG")
                with gr.Column(scale=2):
                    big = gr.Image(label="Face (shown 8x, pixel-crisp)", type="pil", format="png",
                                   height=512, elem_id="face")
            go.click(face, [seed, psi], [big, png, caption], api_name="face", concurrency_id="small",
                     concurrency_limit=8)
            rnd.click(random_face, [psi], [seed, big, png, caption], api_name="random_face",
                      concurrency_id="small", concurrency_limit=8)
        with gr.Tab("Grid"):
            with gr.Row():
                g_start = gr.Number(value=0, label="Start seed")
                g_rows = gr.Slider(1, MAX_GRID, value=8, step=1, label="Rows")
                g_cols = gr.Slider(1, MAX_GRID, value=8, step=1, label="Columns")
                g_psi = gr.Slider(0.05, 2.0, value=1.0, step=0.05, label="psi")
            g_go = gr.Button("Make grid", variant="primary")
            g_layout = gr.Markdown(label="layout")
            g_img = gr.Image(label="Grid", type="pil", format="png")
            g_file = gr.File(label="Grid PNG (64 px cells)")
            g_cells = gr.Gallery(label="Cells (caption = seed; click to view and download)", columns=8, height=400,
                                 format="png")
            g_go.click(grid, [g_start, g_rows, g_cols, g_psi], [g_img, g_file, g_cells, g_layout], api_name="grid",
                       concurrency_id="small", concurrency_limit=4)
        with gr.Tab("1,000 faces"):
            with gr.Row():
                z_count = gr.Number(value=min(1000, max_count), label=f"How many (1 to {max_count})")
                z_start = gr.Number(value=0, label="Start seed")
                z_psi = gr.Slider(0.05, 2.0, value=1.0, step=0.05, label="psi")
            z_go = gr.Button("Make zip", variant="primary")
            z_info = gr.Markdown(label="summary")
            z_file = gr.File(label="faces.zip (PNG per seed + manifest.json)")
            # One zip at a time: single faces keep their own slots and never wait behind a zip.
            z_go.click(zip_faces, [z_count, z_start, z_psi], [z_file, z_info], api_name="zip",
                       concurrency_id="zip", concurrency_limit=1)
        with gr.Tab("Morph"):
            with gr.Row():
                m_seeds = gr.Textbox(value="3,7,11", label="Seeds in order (at least two)")
                m_frames = gr.Slider(MIN_FRAMES, MAX_FRAMES, value=24, step=1, label="Frames per step")
                m_fmt = gr.Radio(["gif", "webp"], value="gif", label="Format")
                m_psi = gr.Slider(0.05, 2.0, value=1.0, step=0.05, label="psi")
            m_go = gr.Button("Morph", variant="primary")
            m_anim = gr.Image(label="Animation", type="filepath")
            m_file = gr.File(label="Download")
            m_frames_out = gr.Gallery(label="Frames", columns=12, height=300, format="png")
            m_go.click(morph, [m_seeds, m_frames, m_fmt, m_psi], [m_anim, m_file, m_frames_out], api_name="morph",
                       concurrency_id="morph", concurrency_limit=2)
        with gr.Tab("About"):
            gr.Markdown(about_md())
        app.queue(max_size=int(os.environ.get("ANIME_GAN_QUEUE", "64")), default_concurrency_limit=4)
    work.adopt(app.temp_file_sets,
               lambda: set().union(*(set(getattr(b, "keep_in_cache", ())) for b in list(app.blocks.values()))))
    return app


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas, as MALLOC_ARENA_MAX=2 would, unless the user set that variable.

    glibc gives each of Gradio's worker threads its own arena, and image buffers freed in one are
    not reused by another: measured with bench/load.py, the server's memory climbed round after
    round by default and stayed nearly flat with two arenas. No-op outside glibc.
    """
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").mallopt(-8, arenas) == 1  # -8 = M_ARENA_MAX
    except (OSError, AttributeError):
        return False


def main() -> int:
    limit_malloc_arenas()  # before Gradio starts its threads
    try:
        engine = Engine.load(None, os.environ.get("ANIME_GAN_DEVICE", "auto"))
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    note = "" if engine.provider == "CUDA" else f" ({engine.provider_note})"
    print(f"model {engine.model_path.name} sha256 {engine.sha256[:12]}, z_dim {engine.z_dim}; provider: {engine.provider}{note}",
          flush=True)
    app = build_app(engine)
    # Gradio keeps a copy of the page's configuration for each of the last state_session_capacity
    # sessions (about 0.1 MB each here; 10,000 by default, so a public Space would grow by a gigabyte).
    # The app keeps no per-session state, so a few hundred recent sessions are plenty.
    app.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
               server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), show_error=True,
               state_session_capacity=SESSIONS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
