"""The face studio: a Gradio app over the shipped ONNX generators (CUDA when there, CPU otherwise).

    python app.py                           # http://127.0.0.1:7860 (the same as python -m demo.app)
    GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT=8080 python app.py
    ANIME_GAN_MODEL=edge-w64 ANIME_GAN_DEVICE=cpu python app.py

This file puts the tabs (demo/tabs.py, one function each) together and serves them, with the
defences of a public server; demo/handlers.py does the work, and its ENDPOINTS table names every API
endpoint, its handler, its cost and its concurrency group. Every endpoint takes the model name after
its own inputs (default: the default model), then the class for conditional models.
"""
from __future__ import annotations

import argparse
import atexit
import logging
import os
import signal
import sys
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from core.errors import UserError
from core.pictures import MAX_BYTES
from core.seeds import ANY_CLASS
from demo import memory
from demo.admission import BodyLimit, QueueBounds, bound_queue
from demo.connections import ConnectionLimits
from demo.connections import install as install_connection_guard
from demo.fields import Dropdown
from demo.handlers import COSTING, Handlers, wrapped
from demo.jobs import watch_cancels
from demo.settings import Settings
from demo.sweeper import WorkDir
from demo.tabs import UI, about_tab, face_tab, grid_tab, invert_tab, morph_tab, steer_tab, zip_tab
from runtime.menu import ModelMenu

WEB = Path(__file__).resolve().parent / "web"  # the in-browser page (docs/browser.md)

STALE = "*The model changed: press the button again for this model's faces.*"


def build_app(menu: ModelMenu, settings: Settings = Settings()) -> gr.Blocks:
    work = WorkDir(settings.workdir or gr.utils.get_upload_folder(), settings.file_ttl_s)
    handlers = Handlers(menu, work, settings.max_count)
    with gr.Blocks(title="Anime face studio") as app:
        gr.Markdown("# Anime face studio\nFaces come from seeds, and the same seed gives the same face "
                    "everywhere (CLI, app, API, the [in-browser page](/edge)); Your face starts from your "
                    "own picture. Running on "
                    f"**{menu.get().provider}**.")
        model = Dropdown(menu.choices(), value=menu.default, label="Model", elem_id="model")
        ui = UI(handlers, wrapped(handlers), model)
        face_tab(ui)
        grid_tab(ui)
        zip_tab(ui, settings.max_count)
        morph_tab(ui)
        steer_tab(ui)
        invert_tab(ui)
        about = about_tab(ui)
        _on_model_change(ui, about)
        # Both tabs with a face show the current seed's face at once, not an empty frame.
        for name, inputs, outputs in ui.refresh:
            ui.wire(app.load, name, inputs, outputs, api_visibility="private")
        app.queue(max_size=settings.queue, default_concurrency_limit=4)
    watch_cancels(app)
    app.tickets = bound_queue(app, COSTING, QueueBounds(settings.per_client, settings.per_client_heavy,
                                                       settings.per_client_cost, max(1, settings.queue // 4),
                                                       settings.trust_proxy))
    # Gradio's copies of made files, and the pictures visitors upload (each is deleted once read; one
    # never read goes after demo/sweeper.UPLOAD_TTL_S).
    work.adopt(app.temp_file_sets,
               lambda: set().union(*(set(getattr(b, "keep_in_cache", ())) for b in list(app.blocks.values()))),
               uploads=app.upload_file_set)
    app.work = work  # closed by main() on exit, and by tests
    return app


def _on_model_change(ui: UI, about: gr.Markdown) -> None:
    """A new model: its card, its class menus, fresh faces where a face is shown, and the other
    tabs' old pictures cleared with a note (they belong to the previous model)."""
    def menus(model):
        classes = ui.h.classes(model)
        update = gr.update(choices=[ANY_CLASS, *classes], value=ANY_CLASS, visible=bool(classes))
        return [update] * len(ui.class_menus)

    def clear(model):
        return [x for caption, outs in ui.stale for x in (STALE, *[None] * len(outs))]
    stale_outputs = [x for caption, outs in ui.stale for x in (caption, *outs)]
    change = ui.wire(ui.model.change, "about", [ui.model], [about])
    reset = change.then(menus, [ui.model], ui.class_menus, api_visibility="private", queue=False)
    ui.model.change(clear, [ui.model], stale_outputs, api_visibility="private", queue=False)
    for name, inputs, outputs in ui.refresh:  # after the class menus are reset: a new model, class "any"
        ui.wire(reset.then, name, inputs, outputs, api_visibility="private")


def serve_edge(app: gr.Blocks, models: Path) -> None:
    """The in-browser page at /edge/ and the model files it loads at /models/ (call after launch).

    Static mounts on the running server: the page is plain files, so any static file server can
    serve demo/web/ and demo/models/ side by side in the same way.
    """
    from fastapi.responses import JSONResponse
    from fastapi.staticfiles import StaticFiles

    index = ModelMenu(models).index()  # the page's menu, from the folder this app serves
    app.server_app.add_api_route("/models/index.json", lambda: JSONResponse(index), methods=["GET"])
    app.server_app.mount("/edge", StaticFiles(directory=WEB, html=True), name="edge")
    app.server_app.mount("/models", StaticFiles(directory=models), name="models")


def launch_options(settings: Settings) -> dict:
    """Gradio's launch settings for a public server: bounded bodies and sessions, no uploads; and the
    server's connections guarded against slow clients (installed here, as the server starts with them)."""
    install_connection_guard(ConnectionLimits(settings.header_timeout_s, settings.body_timeout_s,
                                              settings.connections, 8 * settings.connections, settings.trust_proxy.on))
    # Gradio keeps a copy of the page's configuration for each of the last state_session_capacity
    # sessions (about 0.1 MB each here; 10,000 by default, so a public Space would grow by a gigabyte).
    # System fonts only: the default theme's web font lacks the title's bold weight, so the browser mixed
    # two fonts in it, and a public page should fetch nothing from elsewhere.
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    return {"server_name": settings.host, "server_port": settings.port, "show_error": True, "theme": theme,
            "state_session_capacity": settings.sessions, "max_file_size": MAX_BYTES,
            "app_kwargs": {"middleware": [Middleware(BodyLimit, max_bytes=settings.max_body, trust=settings.trust_proxy,
                                                   uploads_per_minute=settings.uploads_per_minute)]}}


def _stop(*_) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM while shutting down changes nothing
    sys.exit(0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python app.py", description="The face studio: a Gradio app on "
                                "http://HOST:PORT/, the in-browser page at /edge/. Every setting can also come "
                                "from the environment (docs/app.md); a flag wins.")
    p.add_argument("--host", help="address to listen on (GRADIO_SERVER_NAME; default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (GRADIO_SERVER_PORT; default 7860)")
    p.add_argument("--model", help="default model: a shipped name or an .onnx path (ANIME_GAN_MODEL)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="ANIME_GAN_DEVICE (default auto)")
    p.add_argument("--share", action="store_true", help="also a temporary public link through Gradio's share "
                                                        "service (a notebook on a hosted GPU)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    for flag, name in (("host", "GRADIO_SERVER_NAME"), ("port", "GRADIO_SERVER_PORT"), ("model", "ANIME_GAN_MODEL"),
                       ("device", "ANIME_GAN_DEVICE")):
        if getattr(a, flag) is not None:  # one source of truth: Settings reads the environment
            os.environ[name] = str(getattr(a, flag))
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    for noisy in ("httpx", "gradio_client"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    memory.tune_malloc()  # before Gradio starts its threads
    memory.start_trimmer()
    try:
        settings = Settings.from_env()
        # Every run on half the cores: heavy work (one at a time, demo/jobs.py) leaves the rest to single faces.
        menu = ModelMenu(device=settings.device, default=settings.model, threads=max(1, (os.cpu_count() or 2) // 2))
        failed = menu.load_all()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    working = [n for n in menu.names() if n not in failed]
    for message in failed.values():
        print(f"warning: {message}", file=sys.stderr)
    if not working:
        print("error: no model could be loaded" + ("" if failed else f" (no .onnx files in {menu.folder})"), file=sys.stderr)
        return 2
    if menu.default in failed:
        menu.default = working[0]
    engine = menu.get()
    note = "" if engine.provider == "CUDA" else f" ({engine.provider_note})"
    print(f"models: {', '.join(working)}; default {menu.default} (sha256 {engine.sha256[:12]}); "
          f"provider: {engine.provider}{note}", flush=True)
    app = build_app(menu, settings)
    atexit.register(app.work.close)  # stopping the app leaves no files behind
    signal.signal(signal.SIGTERM, _stop)  # SIGTERM runs the atexit clean-up too
    app.launch(prevent_thread_lock=True, share=a.share, **launch_options(settings))
    serve_edge(app, menu.folder)
    app.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
