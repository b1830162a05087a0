"""Generator (PyTorch) -> verified ONNX: BatchNorm folding, fp16/int8 variants, parity gate, metadata.

Works for every generator in networks/: folding, export and the gates need only the module.
"""
from __future__ import annotations

import copy
import io
import json
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch
from torch import nn

from core.dataset import data_record
from core.errors import UserError
from core.files import atomic_write
from core.ort import open_session, usable_devices
from core.parity import MEAN_TOLERANCE, TOLERANCE
from core.seeds import LATENT_RULE, latents, seed_range
from networks.files import recipe_text

EXPORTER_VERSION = "1.0"
PARITY_SEEDS = seed_range("faces", 256)
PARITY_BATCHES = (1, 7, 64)


class ExportError(UserError):
    """The export failed or a variant missed its parity gate; the message says by how much."""


# ----------------------------------------------------------------------------- building the graphs

def class_inputs(n: int, n_classes: int) -> np.ndarray | None:
    """The classes paired with n latents for parity and calibration: every class in turn."""
    return (np.arange(n) % n_classes).astype(np.int64) if n_classes else None


def feeds(z: np.ndarray, classes: np.ndarray | None) -> dict[str, np.ndarray]:
    return {"z": z} if classes is None else {"z": z, "class": classes}


def to_onnx_fp32(model: nn.Module, z_dim: int, opset: int = 17) -> onnx.ModelProto:
    """The generator as ONNX: input `z` float [batch, z_dim] (and, for a conditional one, `class`
    int64 [batch]), output `image` float [batch, 3, 64, 64] in [-1, 1]."""
    buf = io.BytesIO()
    n_classes = getattr(model, "n_classes", 0)
    args = (torch.zeros(2, z_dim),) + ((torch.zeros(2, dtype=torch.long),) if n_classes else ())
    names = ["z", "class"][:len(args)]
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export, which needs the extra
        # onnxscript package; for this plain conv stack both give the same graph.
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), args, buf, dynamo=False, opset_version=opset,
                          input_names=names, output_names=["image"],
                          dynamic_axes={**{n: {0: "batch"} for n in names}, "image": {0: "batch"}},
                          do_constant_folding=True)
    m = onnx.load_from_string(buf.getvalue())
    m.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 3
    return onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)


def to_fp16(fp32: onnx.ModelProto) -> onnx.ModelProto:
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    # keep_io_types: callers still pass float32 z and get float32 images. The converter appends its
    # Cast nodes at the end of the node list, so the graph is re-sorted for the checker.
    m = OnnxModel(convert_float_to_float16(copy.deepcopy(fp32), keep_io_types=True))
    m.topological_sort()
    return m.model


class _LatentReader:
    """Calibration data for static quantisation: latents from seeds disjoint from the parity seeds."""

    def __init__(self, z_dim: int, n_classes: int = 0, n: int = 512, batch: int = 64):
        z, y = latents(seed_range("int8", n), z_dim), class_inputs(n, n_classes)
        self._it = iter([feeds(z[i:i + batch], None if y is None else y[i:i + batch]) for i in range(0, n, batch)])

    def get_next(self):
        return next(self._it, None)


def to_int8(fp32: onnx.ModelProto, z_dim: int, n_classes: int = 0) -> onnx.ModelProto:
    import logging

    convs = [n.name for n in fp32.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_static logs a pre-processing hint meant for CNN classifiers
    try:
        return _quantize(fp32, z_dim, n_classes, convs)
    finally:
        root.setLevel(level)


def _quantize(fp32: onnx.ModelProto, z_dim: int, n_classes: int, convs: list[str]) -> onnx.ModelProto:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        onnx.save(fp32, src)
        # The last convolution makes the pixels: quantising it costs the most quality, so it stays float.
        quantize_static(src, dst, _LatentReader(z_dim, n_classes), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=convs[-1:])
        return onnx.load(dst)


VARIANTS: dict[str, Callable[[onnx.ModelProto, int, int], onnx.ModelProto]] = {   # (fp32 graph, z_dim, classes)
    "fp32": lambda m, z, c: m,
    "fp16": lambda m, z, c: to_fp16(m),
    "int8": to_int8,
}


# ----------------------------------------------------------------------------- parity

@torch.no_grad()
def parity(g: nn.Module, model: onnx.ModelProto, z_dim: int) -> list[dict]:
    """Max and mean |PyTorch - onnxruntime| over 256 seeds, per provider and batch size."""
    z = latents(PARITY_SEEDS, z_dim)
    y = class_inputs(len(z), getattr(g, "n_classes", 0))
    ref = g.eval()(torch.from_numpy(z), None if y is None else torch.from_numpy(y)).numpy()
    data = model.SerializeToString()
    rows = []
    for device in usable_devices():
        try:
            s = open_session(data, device)
        except UserError:  # CUDA built in but unusable here (no libraries): the CPU figures stand alone
            continue
        for b in PARITY_BATCHES:
            out = np.concatenate([s.session.run(None, feeds(z[i:i + b], None if y is None else y[i:i + b]))[0]
                                  for i in range(0, len(z), b)])
            diff = np.abs(out.astype(np.float64) - ref)
            rows.append({"provider": s.provider, "batch": b, "max_abs": float(diff.max()), "mean_abs": float(diff.mean())})
    return rows


@dataclass
class VariantResult:
    variant: str
    path: Path
    bytes: int
    parity: list[dict]
    passed: bool
    message: str


def gate(variant: str, rows: list[dict]) -> tuple[bool, str]:
    worst_max = max(r["max_abs"] for r in rows)
    worst_mean = max(r["mean_abs"] for r in rows)
    tol, mtol = TOLERANCE[variant], MEAN_TOLERANCE[variant]
    if worst_max > tol or worst_mean > mtol:
        return False, (f"{variant} failed parity: max abs diff {worst_max:.3g} (limit {tol:g}), "
                       f"mean {worst_mean:.3g} (limit {mtol:g}); missed by {max(worst_max - tol, worst_mean - mtol):.3g}")
    return True, f"{variant} passed parity: max abs diff {worst_max:.3g} <= {tol:g}, mean {worst_mean:.3g}"


def metadata(card: dict, variant: str, rows: list[dict], fid: dict | None, parameters: int) -> dict[str, str]:
    r = card.get("recipe", {})
    meta = {
        "z_dim": str(card["arch"]["z_dim"]), "output_range": "-1,1", "output_layout": "NCHW RGB 64x64",
        "architecture": json.dumps(card["arch"]), "recipe": r.get("name", "unknown"),
        "recipe_description": recipe_text(card), "epochs": str(card.get("epochs") if card.get("epochs") is not None else ""),  # none for a distillation
        "steps": str(card.get("steps", "")), "train_seconds": str(card.get("seconds", "")),
        "hardware": str(card.get("hardware", "")), "weights": str(card.get("weights", "")),
        "dataset": json.dumps(data_record(card.get("dataset", {}))),
        "latent_rule": LATENT_RULE, "variant": variant, "exporter": f"anime-gan export {EXPORTER_VERSION}",
        "torch": torch.__version__, "parity": json.dumps(rows), "model_card": card.get("model_card", ""),
        "g_parameters": str(parameters), "classes": json.dumps(list(card.get("classes") or [])),
        "class_counts": json.dumps(list(card.get("class_counts") or [])),  # what "any class" draws from
    }
    if "class_strength" in card:  # trainer.class_strength: the class's weights scaled after training
        meta["class_strength"] = str(card["class_strength"])
    if fid:
        meta["fid"] = json.dumps({k: fid[k] for k in ("fid", "protocol", "floor") if k in fid})
    return meta


def read_metadata(path: str | Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def write_verified(g: nn.Module, model: onnx.ModelProto, variant: str, out: Path, card: dict,
                   fid: dict | None = None) -> VariantResult:
    """Check, measure parity, and only then move the model to `out` (temp file + rename)."""
    onnx.checker.check_model(model, full_check=True)
    z_dim = int(card["arch"]["z_dim"])
    rows = parity(g, model, z_dim)
    ok, message = gate(variant, rows)
    if not ok:
        return VariantResult(variant, out, 0, rows, False, message)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, metadata(card, variant, rows, fid, sum(p.numel() for p in g.parameters())))

    def write(tmp: str) -> None:
        onnx.save(model, tmp)
        # Re-verify what is on disk: the bytes that will be shipped, not the proto in memory.
        onnx.checker.check_model(tmp, full_check=True)
        ok2, message2 = gate(variant, parity(g, onnx.load(tmp), z_dim))
        if not ok2:
            raise ExportError(message2)
    try:
        atomic_write(out, write, make_parents=True)
    except OSError as exc:  # a full disk says which file it could not write, not only "[Errno 28]"
        raise ExportError(f"could not write {out}: {exc.strerror or exc}; nothing was written") from None
    return VariantResult(variant, out, out.stat().st_size, rows, True, message)


def variant_path(out: Path, variant: str) -> Path:
    return out if variant == "fp32" else out.with_name(f"{out.stem}-{variant}{out.suffix}")
