"""The app's tabs, one function each: what each shows and which endpoint (demo/handlers.py) each
button calls. demo/app.py puts them together and serves them.

    with gr.Blocks() as app:
        ui = UI(handlers, wrapped(handlers), model_menu)
        face_tab(ui)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import gradio as gr

from core.limits import LIMITS
from core.seeds import ANY_CLASS, MAX_SEED
from demo.fields import Dropdown, Number, Radio, Slider, as_sent
from demo.handlers import ENDPOINTS, GROUPS, Handlers
from runtime.writers import animation_formats

PSI_LABEL = "Truncation psi, in (0, 2] (1 = off; lower = cleaner, less varied)"


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
        choices = classes or self.h.menu.menu_classes()
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


def invert_tab(ui: UI) -> None:
    """A visitor's own face: found in the chosen model's space, then steered or morphed to a seed.
    The picture is uploaded (at most 2 MiB, images only), read and deleted; nothing of it is kept."""
    names = ui.h.slider_names
    with gr.Tab("Your face"):
        gr.Markdown("Upload a drawn face: the model's encoder finds the nearest face the model can draw, then "
                    "steers it or morphs it to a seed. PNG, JPEG, WebP, BMP or GIF, at most 2 MiB; the picture is "
                    "deleted as soon as it is read.")
        with gr.Row():
            with gr.Column(scale=1):
                picture = as_sent(gr.Image(label="Your picture", type="filepath", sources=["upload", "clipboard"],
                                           height=256, elem_id="invert-picture"))
                then = Radio(["steer", "morph"], value="steer", label="Then")
                direction = Dropdown(names, value=names[0] if names else None, label="Steer along")
                seed = Number(value=42, label="Or morph to seed")
                go = gr.Button("Find my face", variant="primary", elem_id="invert-go")
            with gr.Column(scale=2):
                caption = gr.Markdown(elem_id="invert-note")
                with gr.Row():
                    original = gr.Image(label="Your picture at 64x64", type="pil", format="png", height=256)
                    found = gr.Image(label="The face found", type="pil", format="png", height=256, elem_id="invert-found")
                strip = gr.Image(label="From the face found", type="pil", format="png", elem_id="invert-strip")
        ui.wire(go.click, "invert", [picture, then, direction, seed, ui.model], [original, found, strip, caption])
        ui.stale.append((caption, [original, found, strip]))
