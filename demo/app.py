"""The face studio: a Gradio app over the shipped ONNX generators (CUDA when there, CPU otherwise).

    python app.py                           # http://127.0.0.1:7860 (the same as python -m demo.app)
    GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT=8080 python app.py
    ANIME_GAN_MODEL=edge-w64 ANIME_GAN_DEVICE=cpu python app.py

This file is the layout, one function per tab; demo/handlers.py does the work, and its ENDPOINTS
table names every API endpoint, its handler and its concurrency group. Every endpoint takes the
model name after its own inputs (default: the default model), then the class for conditional models.
"""
from __future__ import annotations

import argparse
import atexit
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from core.errors import UserError
from core.limits import LIMITS
from core.seeds import ANY_CLASS, MAX_SEED
from demo import memory
from demo.admission import BodyLimit, QueueBounds, bound_queue
from demo.connections import ConnectionLimits
from demo.connections import install as install_connection_guard
from demo.fields import Dropdown, Number, Radio, Slider
from demo.handlers import COSTING, ENDPOINTS, GROUPS, Handlers, wrapped
from demo.jobs import watch_cancels
from demo.settings import Settings
from demo.sweeper import WorkDir
from runtime.registry import Registry
from runtime.writers import animation_formats

WEB = Path(__file__).resolve().parent / "web"  # the in-browser page (docs/browser.md)
PSI_LABEL = "Truncation psi, in (0, 2] (1 = off; lower = cleaner, less varied)"
STALE = "*The model changed: press the button again for this model's faces.*"


def _psi(label: str = "psi") -> gr.Slider:
    return Slider(0.01, LIMITS.psi[1], value=1.0, step=0.01, label=label)


@dataclass
class UI:
    """What the tabs share: the model menu, the handlers, and each tab's class menu and stale outputs."""
    h: Handlers
    fn: dict
    model: gr.Dropdown
    class_menus: list = field(default_factory=list)
    refresh: list = field(default_factory=list)   # (event fn name, inputs, outputs) re-run on a model change
    stale: list = field(default_factory=list)     # (caption component, cleared outputs) on a model change

    def wire(self, trigger, name: str, inputs: list, outputs: list, **extra):
        """One button (or event) to its endpoint: handler, API name and concurrency from ENDPOINTS."""
        e = ENDPOINTS[name]
        private = not e.public or extra.get("api_visibility") == "private"  # a second trigger of a public one
        api = {"api_visibility": "private"} if private else {"api_name": name}
        return trigger(self.fn[name], inputs, outputs, concurrency_id=e.group,
                       concurrency_limit=GROUPS[e.group], **{**extra, **api})

    def class_menu(self, tab: str) -> gr.Dropdown:
        """The class menu of a tab: shown only when the chosen model has classes. Hidden under an
        unconditional model it still lists every shipped class: gradio_client's API page is drawn
        from these first choices, and a caller of /face with model "cgan" needs its classes there."""
        classes = self.h.classes(self.model.value)
        choices = classes or self.h.models.card_classes()
        menu = Dropdown([ANY_CLASS, *choices], value=ANY_CLASS, label="Class (hair colour)", visible=bool(classes),
                        elem_id=f"class-{tab}")
        self.class_menus.append(menu)
        return menu


def face_tab(ui: UI) -> None:
    with gr.Tab("Face"):
        with gr.Row():
            with gr.Column(scale=1):
                seed = Number(value=42, label=f"Seed (0 to {MAX_SEED}; Enter generates)", elem_id="seed")
                psi = _psi(PSI_LABEL)
                cls = ui.class_menu("face")
                with gr.Row():
                    go = gr.Button("Generate", variant="primary", elem_id="generate")
                    rnd = gr.Button("Random seed", elem_id="random")
                caption = gr.Markdown(label="caption", elem_id="caption")
                png = gr.File(label="64x64 PNG")
            with gr.Column(scale=2):
                big = gr.Image(label="Face (shown 8x, pixel-crisp)", type="pil", format="png", height=512, elem_id="face")
        inputs = [seed, psi, ui.model, cls]
        ui.wire(go.click, "face", inputs, [big, png, caption])
        ui.wire(seed.submit, "face", inputs, [big, png, caption], api_visibility="private")
        ui.wire(rnd.click, "random_face", [psi, ui.model, cls], [seed, big, png, caption])
        ui.refresh.append(("face", inputs, [big, png, caption]))


def grid_tab(ui: UI) -> None:
    with gr.Tab("Grid"):
        with gr.Row():
            start = Number(value=0, label="Start seed")
            rows = Slider(1, LIMITS.grid_side, value=8, step=1, label="Rows")
            cols = Slider(1, LIMITS.grid_side, value=8, step=1, label="Columns")
            psi = _psi()
            cls = ui.class_menu("grid")
        go = gr.Button("Make grid", variant="primary", elem_id="grid-go")
        layout = gr.Markdown(label="layout", elem_id="grid-note")
        img = gr.Image(label="Grid", type="pil", format="png", elem_id="grid")
        file = gr.File(label="Grid PNG (64 px cells)")
        ui.wire(go.click, "grid", [start, rows, cols, psi, ui.model, cls], [img, file, layout])
        ui.stale.append((layout, [img, file]))


def zip_tab(ui: UI, max_count: int) -> None:
    with gr.Tab("1,000 faces"):
        with gr.Row():
            count = Number(value=min(1000, max_count), label=f"How many (1 to {max_count})")
            start = Number(value=0, label="Start seed")
            psi = _psi()
            cls = ui.class_menu("zip")
        go = gr.Button("Make zip", variant="primary")
        info = gr.Markdown(label="summary")
        file = gr.File(label="faces.zip (PNG per seed + manifest.json)")
        # One zip at a time: single faces keep their own slots and never wait behind a zip.
        ui.wire(go.click, "zip", [count, start, psi, ui.model, cls], [file, info])
        ui.stale.append((info, [file]))


def morph_tab(ui: UI) -> None:
    with gr.Tab("Morph"):
        with gr.Row():
            seeds = gr.Textbox(value="3,7,11", label=f"Seeds in order (2 to {LIMITS.morph_seeds})")
            frames = Slider(*LIMITS.morph_frames, value=24, step=1,
                            label=f"Frames per step (at most {LIMITS.morph_total_frames} frames in all)")
            fmt = Radio(animation_formats(), value=animation_formats()[0], label="Format")
            psi = _psi()
            cls = ui.class_menu("morph")
        go = gr.Button("Morph", variant="primary", elem_id="morph")
        caption = gr.Markdown(elem_id="morph-note")
        anim = gr.Image(label="Animation", type="filepath")
        file = gr.File(label="Download")
        ui.wire(go.click, "morph", [seeds, frames, fmt, psi, ui.model, cls], [anim, file, caption])
        ui.stale.append((caption, [anim, file]))


def steer_tab(ui: UI) -> None:
    names = ui.h.slider_names
    with gr.Tab("Steer"):
        if not names:
            gr.Markdown("No model here has steering directions (`python -m export.directions` measures them).")
        with gr.Row():
            with gr.Column(scale=1):
                seed = Number(value=42, label="Seed (Enter updates)", elem_id="steer-seed")
                psi = _psi()
                sliders = [Slider(-3, 3, value=0, step=0.1, label=ui.h.slider_label(n), elem_id=f"steer-{n}")
                           for n in names]
            with gr.Column(scale=2):
                big = gr.Image(label="Steered face (8x)", type="pil", format="png", height=512, elem_id="steered")
                caption = gr.Markdown(elem_id="steer-caption")
                png = gr.File(label="64x64 PNG")
                with gr.Row():
                    direction = Dropdown(names, value=names[0] if names else None, label="Direction")
                    go = gr.Button("Strip from -3 to +3", elem_id="strip-go")
                gr.Markdown("Strip (seed along the direction, -3 to +3):")
                strip = gr.Image(show_label=False, buttons=[], type="pil", format="png",  # no icons over the faces
                                 elem_id="strip")
                strip_png = gr.File(label="Strip PNG")
                strip_caption = gr.Markdown()
        # The face follows the sliders and Enter in their number boxes; the API takes edits as text (/steer).
        inputs = [seed, psi, ui.model, *sliders]
        # `input` fires while a slider moves and when a value is typed into its box (Enter or leaving it).
        follow = [seed.submit, psi.release, *[s.input for s in sliders]]
        ui.wire(lambda *a, **k: gr.on(follow, *a, trigger_mode="always_last", **k),
                "steer_sliders", inputs, [big, png, caption])
        edits = gr.Textbox(visible=False)
        ui.wire(gr.Button(visible=False).click, "steer", [seed, psi, edits, ui.model], [big, png, caption])
        ui.wire(go.click, "strip", [seed, direction, psi, ui.model], [strip, strip_png, strip_caption])
        ui.refresh.append(("steer_sliders", inputs, [big, png, caption]))


def about_tab(ui: UI) -> gr.Markdown:
    with gr.Tab("About"):
        return gr.Markdown(ui.h.about(ui.model.value))


def build_app(registry: Registry, settings: Settings = Settings()) -> gr.Blocks:
    work = WorkDir(settings.workdir or gr.utils.get_upload_folder(), settings.file_ttl_s)
    handlers = Handlers(registry, work, settings.max_count)
    with gr.Blocks(title="Anime face studio") as app:
        gr.Markdown("# Anime face studio\nEvery face comes from a seed: the same seed gives the same face "
                    "everywhere (CLI, app, API, the [in-browser page](/edge)). Running on "
                    f"**{registry.get().provider}**.")
        model = Dropdown(registry.choices(), value=registry.default, label="Model", elem_id="model")
        ui = UI(handlers, wrapped(handlers), model)
        face_tab(ui)
        grid_tab(ui)
        zip_tab(ui, settings.max_count)
        morph_tab(ui)
        steer_tab(ui)
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
    work.adopt(app.temp_file_sets,
               lambda: set().union(*(set(getattr(b, "keep_in_cache", ())) for b in list(app.blocks.values()))))
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

    index = Registry(models).index()  # the page's menu, from the folder this app serves
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
            "state_session_capacity": settings.sessions, "max_file_size": 1,
            "app_kwargs": {"middleware": [Middleware(BodyLimit, max_bytes=settings.max_body)]}}


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
        registry = Registry(device=settings.device, default=settings.model, threads=max(1, (os.cpu_count() or 2) // 2))
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
    app.launch(prevent_thread_lock=True, **launch_options(settings))
    serve_edge(app, registry.folder)
    app.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
