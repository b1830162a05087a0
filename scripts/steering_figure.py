"""The steering figure (docs/steering.png): one row of faces per direction, from -3 to +3, for one seed.

    python -m scripts.steering_figure                       # default model, seed 42 -> docs/steering.png
    python -m scripts.steering_figure --model edge-w64 --seed 7 --out steer.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import numpy as np
from PIL import Image, ImageDraw

from core.images import make_grid, save_png, upscale
from runtime.menu import ModelMenu

LABEL_W = 150


def figure(model: str | None, seed: int, steps: int = 7, span: float = 3.0, scale: int = 2) -> Image.Image:
    engine = ModelMenu(device="cpu", default=model).get()
    if engine.directions is None:
        raise SystemExit(f"error: {engine.directions_note}")
    names = engine.directions.names
    strips = [make_grid(engine.strip(seed, n, span=span, steps=steps), cols=steps) for n in names]
    body = upscale(Image.fromarray(np.concatenate(strips)), scale)
    out = Image.new("RGB", (LABEL_W + body.width, body.height + 24), "white")
    out.paste(body, (LABEL_W, 24))
    draw = ImageDraw.Draw(out)
    row_h = body.height // len(names)
    for i, n in enumerate(names):
        draw.text((8, 24 + i * row_h + row_h // 2 - 6), n, fill="black")
    for j, s in enumerate(np.linspace(-span, span, steps)):
        draw.text((LABEL_W + j * body.width // steps + body.width // steps // 2 - 10, 6), f"{s:+.0f}", fill="black")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model name or .onnx (default: the default model)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "steering.png")
    a = p.parse_args()
    save_png(figure(a.model, a.seed), a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
