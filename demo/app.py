"""The face studio: a Gradio app over the shipped ONNX generators (CUDA when there, CPU otherwise).

    python demo/app.py                     # http://127.0.0.1:7860
    GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT=8080 python demo/app.py
    ANIME_GAN_MODEL=edge-w64 ANIME_GAN_DEVICE=cpu python demo/app.py

This file is the layout; demo/handlers.py does the work. Every tab is also an API endpoint
(README: gradio_client), and every endpoint takes the model name last (default: the default model).
"""
from __future__ import annotations

import atexit
import logging
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import gradio as gr  # noqa: E402

from core.errors import UserError  # noqa: E402
from core.limits import LIMITS  # noqa: E402
from core.seeds import MAX_SEED  # noqa: E402
from demo import memory  # noqa: E402
from demo.fields import Dropdown, Number, Radio, Slider  # noqa: E402
from demo.handlers import FORMATS, Handlers, wrapped  # noqa: E402
from demo.registry import Registry  # noqa: E402
from demo.settings import Settings  # noqa: E402
from demo.sweeper import WorkDir  # noqa: E402

WEB = Path(__file__).resolve().parent / "web"  # the in-browser page (README: "In the browser")
PSI_LABEL = "Truncation psi, in (0, 2] (1 = off; lower = cleaner, less varied)"


def _psi(label: str = "psi") -> gr.Slider:
    return Slider(0.01, LIMITS.psi[1], value=1.0, step=0.01, label=label)


def build_app(registry: Registry, settings: Settings = Settings()) -> gr.Blocks:
    work = WorkDir(settings.workdir or gr.utils.get_upload_folder(), settings.file_ttl_s)
    handlers = Handlers(registry, work, settings.max_count)
    fn = wrapped(handlers)
    small = {"concurrency_id": "small", "concurrency_limit": 8}

    with gr.Blocks(title="Anime face studio") as app:
        gr.Markdown("# Anime face studio\nEvery face comes from a seed: the same seed gives the same face "
                    "everywhere (CLI, app, API, the [in-browser page](/edge)). Running on "
                    f"**{registry.get().provider}**.")
        model = Dropdown(registry.choices(), value=registry.default, label="Model", elem_id="model")
        with gr.Tab("Face"):
            with gr.Row():
                with gr.Column(scale=1):
                    seed = Number(value=42, label=f"Seed (0 to {MAX_SEED})", elem_id="seed")
                    psi = _psi(PSI_LABEL)
                    with gr.Row():
                        go = gr.Button("Generate", variant="primary", elem_id="generate")
                        rnd = gr.Button("Random seed", elem_id="random")
                    caption = gr.Markdown(label="caption")
                    png = gr.File(label="64x64 PNG")
                with gr.Column(scale=2):
                    big = gr.Image(label="Face (shown 8x, pixel-crisp)", type="pil", format="png",
                                   height=512, elem_id="face")
            go.click(fn["face"], [seed, psi, model], [big, png, caption], api_name="face", **small)
            rnd.click(fn["random_face"], [psi, model], [seed, big, png, caption], api_name="random_face", **small)
        with gr.Tab("Grid"):
            with gr.Row():
                g_start = Number(value=0, label="Start seed")
                g_rows = Slider(1, LIMITS.grid_side, value=8, step=1, label="Rows")
                g_cols = Slider(1, LIMITS.grid_side, value=8, step=1, label="Columns")
                g_psi = _psi()
            g_go = gr.Button("Make grid", variant="primary")
            g_layout = gr.Markdown(label="layout")
            g_img = gr.Image(label="Grid", type="pil", format="png")
            g_file = gr.File(label="Grid PNG (64 px cells)")
            g_cells = gr.Gallery(label="Cells (caption = seed; click to view and download)", columns=8, height=400,
                                 format="png")
            g_go.click(fn["grid"], [g_start, g_rows, g_cols, g_psi, model], [g_img, g_file, g_cells, g_layout],
                       api_name="grid", concurrency_id="small", concurrency_limit=4)
        with gr.Tab("1,000 faces"):
            with gr.Row():
                z_count = Number(value=min(1000, settings.max_count), label=f"How many (1 to {settings.max_count})")
                z_start = Number(value=0, label="Start seed")
                z_psi = _psi()
            z_go = gr.Button("Make zip", variant="primary")
            z_info = gr.Markdown(label="summary")
            z_file = gr.File(label="faces.zip (PNG per seed + manifest.json)")
            # One zip at a time: single faces keep their own slots and never wait behind a zip.
            z_go.click(fn["zip_faces"], [z_count, z_start, z_psi, model], [z_file, z_info], api_name="zip",
                       concurrency_id="zip", concurrency_limit=1)
        with gr.Tab("Morph"):
            with gr.Row():
                m_seeds = gr.Textbox(value="3,7,11", label=f"Seeds in order (2 to {LIMITS.morph_seeds})")
                m_frames = Slider(*LIMITS.morph_frames, value=24, step=1,
                                  label=f"Frames per step (at most {LIMITS.morph_total_frames} frames in all)")
                m_fmt = Radio(list(FORMATS), value="gif", label="Format")
                m_psi = _psi()
            m_go = gr.Button("Morph", variant="primary")
            m_anim = gr.Image(label="Animation", type="filepath")
            m_file = gr.File(label="Download")
            m_frames_out = gr.Gallery(label="Frames", columns=12, height=300, format="png")
            # One morph at a time: the largest legal one encodes 241 frames.
            m_go.click(fn["morph"], [m_seeds, m_frames, m_fmt, m_psi, model], [m_anim, m_file, m_frames_out],
                       api_name="morph", concurrency_id="morph", concurrency_limit=1)
        with gr.Tab("Steer"):
            names = handlers.slider_names
            if not names:
                gr.Markdown("No model here has steering directions (export/directions.py measures them).")
            with gr.Row():
                with gr.Column(scale=1):
                    s_seed = Number(value=42, label="Seed", elem_id="steer-seed")
                    s_psi = _psi()
                    sliders = [Slider(-3, 3, value=0, step=0.1, label=n.replace("_", " "), elem_id=f"steer-{n}")
                               for n in names]
                with gr.Column(scale=2):
                    s_big = gr.Image(label="Steered face (8x)", type="pil", format="png", height=512, elem_id="steered")
                    s_caption = gr.Markdown()
                    s_png = gr.File(label="64x64 PNG")
                    with gr.Row():
                        s_dir = Dropdown(names, value=names[0] if names else None, label="Direction")
                        s_go = gr.Button("Strip from -3 to +3")
                    s_strip = gr.Image(label="Strip", type="pil", format="png")
                    s_strip_png = gr.File(label="Strip PNG")
                    s_strip_caption = gr.Markdown()
            # The face follows the sliders; the API takes the edits as text (/steer) instead.
            steer_inputs = [s_seed, s_psi, model, *sliders]
            gr.on([s_seed.submit, s_psi.release, *[sl.release for sl in sliders]], fn["steer_sliders"], steer_inputs,
                  [s_big, s_png, s_caption], api_visibility="private", trigger_mode="always_last", **small)
            s_edits = gr.Textbox(visible=False)
            gr.Button(visible=False).click(fn["steer"], [s_seed, s_psi, s_edits, model], [s_big, s_png, s_caption],
                                           api_name="steer", **small)
            s_go.click(fn["strip"], [s_seed, s_dir, s_psi, model], [s_strip, s_strip_png, s_strip_caption],
                       api_name="strip", **small)
        with gr.Tab("About"):
            about = gr.Markdown(handlers.about(registry.default))
        model.change(handlers.about, [model], [about], api_visibility="private")
        app.queue(max_size=settings.queue, default_concurrency_limit=4)
    work.adopt(app.temp_file_sets,
               lambda: set().union(*(set(getattr(b, "keep_in_cache", ())) for b in list(app.blocks.values()))))
    app.work = work  # closed by main() on exit, and by tests
    return app


def serve_edge(app: gr.Blocks, models: Path) -> None:
    """The in-browser page at /edge/ and the model files it loads at /models/ (call after launch).

    Static mounts on the running server: the page is plain files, so any static file server can
    serve demo/web/ and demo/models/ side by side in the same way.
    """
    from fastapi.staticfiles import StaticFiles

    app.server_app.mount("/edge", StaticFiles(directory=WEB, html=True), name="edge")
    app.server_app.mount("/models", StaticFiles(directory=models), name="models")


def _stop(*_) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM while shutting down changes nothing
    sys.exit(0)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    for noisy in ("httpx", "gradio_client"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    memory.tune_malloc()  # before Gradio starts its threads
    memory.start_trimmer()
    try:
        settings = Settings.from_env()
        registry = Registry(device=settings.device, default=settings.model)
        failed = registry.load_all()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    working = [n for n in registry.names() if n not in failed]
    for message in failed.values():
        print(f"warning: {message}", file=sys.stderr)
    if not working:
        print("error: no model could be loaded" + ("" if failed else f" (no .onnx files in {registry.folder})"), file=sys.stderr)
        return 2
    if registry.default in failed:
        registry.default = working[0]
    engine = registry.get()
    note = "" if engine.provider == "CUDA" else f" ({engine.provider_note})"
    print(f"models: {', '.join(working)}; default {registry.default} (sha256 {engine.sha256[:12]}); "
          f"provider: {engine.provider}{note}", flush=True)
    app = build_app(registry, settings)
    atexit.register(app.work.close)  # stopping the app leaves no files behind
    signal.signal(signal.SIGTERM, _stop)  # SIGTERM runs the atexit clean-up too
    # Gradio keeps a copy of the page's configuration for each of the last state_session_capacity
    # sessions (about 0.1 MB each here; 10,000 by default, so a public Space would grow by a gigabyte).
    # The app keeps no per-session state, so a few hundred recent sessions are plenty.
    app.launch(server_name=settings.host, server_port=settings.port, show_error=True,
               state_session_capacity=settings.sessions, prevent_thread_lock=True)
    serve_edge(app, registry.folder)
    app.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
