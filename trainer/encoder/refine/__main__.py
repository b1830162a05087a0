"""Find a picture's face in a model, then refine it by gradient descent on the latent (PyTorch).

examples:
  python -m trainer.encoder.refine --picture me.png --model demo/models/generator.onnx --out found.png
  python -m trainer.encoder.refine --picture me.png --model demo/models/cgan.onnx --class blue --steps 200

It starts from the model's encoder (NAME.encoder.onnx beside it), or from a latent the CLI wrote
(--latent found.latent.json), and writes the refined face and its latent (NAME.latent.json; then
`python -m demo.generate --latent NAME.latent.json --edit ...` steers or morphs it). Slower than the encoder alone and closer in pixels:
docs/inversion.md says by how much.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from core.errors import UserError, command, quote
from core.files import atomic_write_text, sha256_file
from core.images import save_png, to_uint8, upscale
from core.pictures import read_face


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * np.log10(255.0 ** 2 / max(float(((a.astype(float) - b) ** 2).mean()), 1e-10))


def start_latent(a: argparse.Namespace, model: Path, face: np.ndarray, classes: list[str]) -> tuple[np.ndarray, int | None]:
    """The latent to refine (and its class): from --latent, else from the model's encoder."""
    if a.latent:
        try:
            record = json.loads(Path(a.latent).read_text())
            z = np.asarray(record["z"], np.float32)[None]
        except (OSError, ValueError, KeyError, TypeError):
            raise UserError(f"--latent {a.latent} is not a latent file written by --invert") from None
        cls = record.get("class")
        return z, classes.index(cls) if cls in classes else None
    from core.ort import open_session

    encoder = model.with_name(model.stem + ".encoder.onnx")
    if not encoder.is_file():
        raise UserError(f"{model.name} has no encoder beside it ({encoder.name}); give --latent or train one "
                        f"(python -m trainer.encoder)")
    out = open_session(encoder, "cpu").session.run(None, {"image": face.astype(np.float32).transpose(2, 0, 1)[None]
                                                         / 127.5 - 1})
    return out[0], int(out[1].argmax(1)[0]) if len(out) > 1 and classes else None


@command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.encoder.refine", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--picture", type=Path, required=True, help="the picture (PNG, JPEG, WebP, BMP or GIF, at most 2 MiB)")
    p.add_argument("--model", type=Path, required=True, help="the model: NAME.onnx (float32 or float16) or a Generator.pth")
    p.add_argument("--latent", type=Path, help="start from this NAME.latent.json instead of the encoder")
    p.add_argument("--class", dest="cls", help="a conditional model's class (default: the one the encoder read)")
    p.add_argument("--steps", type=int, default=100, help="gradient steps (default 100)")
    p.add_argument("--out", type=Path, default=Path("refined.png"), help="the face (default refined.png)")
    p.add_argument("--upscale", type=int, default=1, help="pixel-crisp scale of the PNG, 1 to 16 (default 1)")
    a = p.parse_args(argv)
    if not 1 <= a.steps <= 10_000 or not 1 <= a.upscale <= 16:
        raise UserError("--steps must be from 1 to 10000 and --upscale from 1 to 16")
    if a.out.suffix.lower() != ".png":
        raise UserError(f"--out must be a .png file, got {quote(str(a.out))}")
    face = read_face(a.picture)
    import torch

    from trainer.encoder.refine import refine
    from trainer.finetune.sources import load_generator_source

    g, card = load_generator_source(a.model)
    classes = list(card.get("classes") or [])
    z0, cls = start_latent(a, a.model, face, classes)
    if a.cls is not None:
        if a.cls not in classes:
            raise UserError(f"--class must be one of: {', '.join(classes) or 'none (this model has no classes)'}")
        cls = classes.index(a.cls)
    y = torch.tensor([cls if cls is not None else 0]) if classes else None
    x = torch.from_numpy(face.astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1)
    z = refine(g.eval(), torch.from_numpy(z0), x, y, steps=a.steps)
    with torch.no_grad():
        start, found = (to_uint8(g(v, y).numpy())[0] for v in (torch.from_numpy(z0), z))
    from PIL import Image

    a.out.parent.mkdir(parents=True, exist_ok=True)
    save_png(upscale(Image.fromarray(found), a.upscale), a.out)
    record = {"picture": a.picture.name, "model": a.model.name,
              "model_sha256": sha256_file(a.model) if a.model.is_file() else None,
              "z": [round(float(v), 6) for v in z[0]], "class": classes[cls] if classes and cls is not None else None,
              "edits": {}, "refined_steps": a.steps}
    latent = a.out.with_name(a.out.stem + ".latent.json")
    atomic_write_text(latent, json.dumps(record, indent=1) + "\n")
    print(f"{a.steps} steps: PSNR {psnr(start, face):.2f} -> {psnr(found, face):.2f} dB; the face -> {a.out}, "
          f"its latent -> {latent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
