"""Export an encoder (python -m trainer.encoder) to ONNX beside its model, after the same kind of
parity check as the generators': nothing is written unless onnxruntime reads faces as PyTorch does.

examples:
  python -m export.encoder --run runs/encoder-generator --out demo/models/generator.encoder.onnx
  python -m demo.generate --invert my_face.png --out found.png

The file takes `image` float32 [batch, 3, 64, 64] in [-1, 1] and returns `z` float32 [batch, z_dim]
(and `class_logits` [batch, classes] for a conditional generator). Its metadata names the generator
it belongs to (file name and sha256): the runtime uses it only beside that model.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from core.errors import UserError, command, require
from core.files import atomic_write_bytes

TOLERANCE = 1e-4  # max |PyTorch - onnxruntime| on latents (of standard deviation 1), float32
PARITY_N = 256


def parity_images(n: int = PARITY_N) -> np.ndarray:
    """Face-like test inputs: smooth random colour fields in [-1, 1] (fixed, so every export is checked alike)."""
    rng = np.random.RandomState(0)
    low = rng.uniform(-1, 1, (n, 3, 8, 8)).astype(np.float32)
    return np.repeat(np.repeat(low, 8, axis=2), 8, axis=3) + rng.normal(0, 0.05, (n, 3, 64, 64)).astype(np.float32)


def to_onnx(encoder, opset: int = 17) -> bytes:
    import torch

    conditional = encoder.n_classes > 0
    buf = io.BytesIO()
    names = ["z", "class_logits"] if conditional else ["z"]

    class Wrapped(torch.nn.Module):  # one output for an unconditional generator's encoder
        def __init__(self, e):
            super().__init__()
            self.e = e

        def forward(self, x):
            z, logits = self.e(x)
            return (z, logits) if conditional else z
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Wrapped(encoder).eval(), (torch.zeros(2, 3, 64, 64),), buf, dynamo=False, opset_version=opset,
                          input_names=["image"], output_names=names,
                          dynamic_axes={n: {0: "batch"} for n in ["image", *names]}, do_constant_folding=True)
    return buf.getvalue()


def check_parity(encoder, data: bytes) -> float:
    import torch

    from core.ort import open_session

    x = parity_images()
    with torch.no_grad():
        want = encoder.eval()(torch.from_numpy(x))[0].numpy()
    got = np.concatenate([open_session(data, "cpu").session.run(None, {"image": x[i:i + 64]})[0]
                          for i in range(0, len(x), 64)])
    return float(np.abs(got - want).max())


def with_metadata(data: bytes, card: dict, diff: float) -> bytes:
    import onnx

    m = onnx.load_from_string(data)
    meta = {"kind": "encoder", "z_dim": str(card["arch"]["z_dim"]), "n_classes": str(card["arch"]["n_classes"]),
            "classes": json.dumps(card.get("classes") or []), "generator": card["generator"]["name"],
            "generator_sha256": card["generator"]["sha256"], "parity_max_abs": f"{diff:.3g}",
            "held_out": json.dumps(card.get("held_out", {})), "encoder_card": json.dumps(card)}
    del m.metadata_props[:]
    onnx.helper.set_model_props(m, meta)
    onnx.checker.check_model(m, full_check=True)
    return m.SerializeToString()


@command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.encoder", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="the encoder's run folder (Encoder.pth, encoder.json)")
    p.add_argument("--out", type=Path, required=True, help="NAME.encoder.onnx beside the model NAME.onnx")
    a = p.parse_args(argv)
    if not a.out.name.endswith(".encoder.onnx"):
        raise UserError(f"--out must be NAME.encoder.onnx, beside the model NAME.onnx: got {a.out}")
    require("exporting an encoder", "torch", "onnx")
    from networks.files import load_encoder

    encoder, card = load_encoder(a.run)
    data = to_onnx(encoder)
    diff = check_parity(encoder, data)
    if diff > TOLERANCE:
        raise UserError(f"the ONNX encoder differs from PyTorch by {diff:.3g} (at most {TOLERANCE:g}): nothing written")
    atomic_write_bytes(a.out, with_metadata(data, card, diff), make_parents=True)
    model = a.out.with_name(a.out.name.replace(".encoder.onnx", ".onnx"))
    print(f"wrote {a.out} ({a.out.stat().st_size / 1e6:.2f} MB; parity max abs diff {diff:.2e} <= {TOLERANCE:g}); "
          f"for {card['generator']['name']}" + ("" if model.is_file() else f" (no {model.name} beside it yet)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
