"""Generator (PyTorch) -> verified ONNX: BatchNorm folding, fp16/int8 variants, parity gate, metadata."""
from __future__ import annotations

import copy
import io
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from trainer.latents import LATENT_RULE, latents_for_seeds
from trainer.models import Generator

EXPORTER_VERSION = "1.0"
PARITY_SEEDS = range(256)
PARITY_BATCHES = (1, 7, 64)
# Max abs difference allowed against PyTorch fp32 on the CPU, per variant. The int8 figure comes
# from measurement (see README): QDQ int8 with the last ConvTranspose kept in float.
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2, "int8": 0.35}
# Mean abs difference: int8's max is dominated by a few saturated pixels, its mean says more.
MEAN_TOLERANCE = {"fp32": 1e-5, "fp16": 5e-3, "int8": 0.05}


class ExportError(RuntimeError):
    """The export failed or a variant missed its parity gate; the message says by how much."""


# ----------------------------------------------------------------------------- folding

class FoldedGenerator(nn.Module):
    """The same function as Generator in eval mode, with every BatchNorm folded into its ConvTranspose."""

    def __init__(self, layers: nn.Sequential, z_dim: int):
        super().__init__()
        self.net, self.z_dim = layers, z_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.reshape(-1, self.z_dim, 1, 1))


@torch.no_grad()
def fold_batchnorm(g: Generator) -> FoldedGenerator:
    """y = gamma * (convT(x) + b - mean) / sqrt(var + eps) + beta, absorbed into convT's weight and bias.

    ConvTranspose2d stores its weight as [in, out, kH, kW], so the per-output-channel scale
    multiplies weight axis 1 (for Conv2d it would be axis 0).
    """
    layers: list[nn.Module] = []
    mods = list(copy.deepcopy(g).eval().net)
    i = 0
    while i < len(mods):
        m = mods[i]
        nxt = mods[i + 1] if i + 1 < len(mods) else None
        if isinstance(m, nn.ConvTranspose2d) and isinstance(nxt, nn.BatchNorm2d):
            scale = nxt.weight / torch.sqrt(nxt.running_var + nxt.eps)
            conv = copy.deepcopy(m)
            conv.weight.copy_(m.weight * scale[None, :, None, None])
            bias = m.bias if m.bias is not None else torch.zeros_like(nxt.running_mean)
            conv.bias = nn.Parameter((bias - nxt.running_mean) * scale + nxt.bias)
            layers.append(conv)
            i += 2
        else:
            layers.append(m)
            i += 1
    return FoldedGenerator(nn.Sequential(*layers), g.z_dim).eval()


# ----------------------------------------------------------------------------- building the graphs

def to_onnx_fp32(model: nn.Module, z_dim: int, opset: int = 17) -> onnx.ModelProto:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export, which needs the extra
        # onnxscript package; for this plain conv stack both give the same graph.
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.zeros(2, z_dim),), buf, dynamo=False, opset_version=opset,
                          input_names=["z"], output_names=["image"],
                          dynamic_axes={"z": {0: "batch"}, "image": {0: "batch"}}, do_constant_folding=True)
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

    def __init__(self, z_dim: int, n: int = 512, batch: int = 64):
        z = latents_for_seeds(range(100_000, 100_000 + n), z_dim)
        self._it = iter([{"z": z[i:i + batch]} for i in range(0, n, batch)])

    def get_next(self):
        return next(self._it, None)


def to_int8(fp32: onnx.ModelProto, z_dim: int) -> onnx.ModelProto:
    import logging

    convs = [n.name for n in fp32.graph.node if n.op_type == "ConvTranspose"]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_static logs a pre-processing hint meant for CNN classifiers
    try:
        return _quantize(fp32, z_dim, convs)
    finally:
        root.setLevel(level)


def _quantize(fp32: onnx.ModelProto, z_dim: int, convs: list[str]) -> onnx.ModelProto:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        onnx.save(fp32, src)
        # The last ConvTranspose makes the pixels: quantising it costs the most quality, so it stays float.
        quantize_static(src, dst, _LatentReader(z_dim), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=convs[-1:])
        return onnx.load(dst)


VARIANTS: dict[str, Callable[[onnx.ModelProto, int], onnx.ModelProto]] = {
    "fp32": lambda m, z: m,
    "fp16": lambda m, z: to_fp16(m),
    "int8": to_int8,
}


# ----------------------------------------------------------------------------- parity

def session(model: onnx.ModelProto | str | Path, provider: str = "CPUExecutionProvider") -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, opts, providers=[provider])


def cuda_usable() -> bool:
    """onnxruntime-gpu lists CUDA even where its libraries are missing; only a session tells."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    ort.set_default_logger_severity(4)  # the failed probe would print an error banner otherwise
    try:
        tiny = onnx.helper.make_model(onnx.helper.make_graph(
            [onnx.helper.make_node("Identity", ["x"], ["y"])], "probe",
            [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])]))
        sess = ort.InferenceSession(tiny.SerializeToString(), providers=["CUDAExecutionProvider"])
        return sess.get_providers()[0] == "CUDAExecutionProvider"
    except Exception:  # noqa: BLE001
        return False
    finally:
        ort.set_default_logger_severity(2)


@torch.no_grad()
def parity(g: nn.Module, model: onnx.ModelProto, z_dim: int) -> list[dict]:
    """Max and mean |PyTorch - onnxruntime| over 256 seeds, per provider and batch size."""
    z = latents_for_seeds(PARITY_SEEDS, z_dim)
    ref = g.eval()(torch.from_numpy(z)).numpy()
    providers = ["CPUExecutionProvider"] + (["CUDAExecutionProvider"] if cuda_usable() else [])
    rows = []
    for prov in providers:
        try:
            sess = session(model, prov)
        except Exception:  # noqa: BLE001 - CUDA listed but unusable (no libraries): CPU figures stand alone
            continue
        if prov not in sess.get_providers()[:1]:
            continue
        for b in PARITY_BATCHES:
            out = np.concatenate([sess.run(None, {"z": z[i:i + b]})[0] for i in range(0, len(z), b)])
            diff = np.abs(out.astype(np.float64) - ref)
            rows.append({"provider": prov.replace("ExecutionProvider", ""), "batch": b,
                         "max_abs": float(diff.max()), "mean_abs": float(diff.mean())})
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


def metadata(card: dict, variant: str, rows: list[dict], fid: dict | None) -> dict[str, str]:
    r = card.get("recipe", {})
    meta = {
        "z_dim": str(card["arch"]["z_dim"]), "output_range": "-1,1", "output_layout": "NCHW RGB 64x64",
        "architecture": json.dumps(card["arch"]), "recipe": r.get("name", "unknown"),
        "recipe_description": r.get("description", ""), "epochs": str(card.get("epochs", "")),
        "steps": str(card.get("steps", "")), "train_seconds": str(card.get("seconds", "")),
        "hardware": str(card.get("hardware", "")), "weights": str(card.get("weights", "")),
        "dataset": json.dumps({k: v for k, v in card.get("dataset", {}).items() if k != "path"}
                              | {"name": Path(str(card.get("dataset", {}).get("path", ""))).name}),
        "latent_rule": LATENT_RULE, "variant": variant, "exporter": f"anime-gan export {EXPORTER_VERSION}",
        "torch": torch.__version__, "parity": json.dumps(rows), "model_card": card.get("model_card", ""),
    }
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
    onnx.helper.set_model_props(model, metadata(card, variant, rows, fid))
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        onnx.save(model, tmp)
        # Re-verify what is on disk: the bytes that will be shipped, not the proto in memory.
        onnx.checker.check_model(tmp, full_check=True)
        ok2, message2 = gate(variant, parity(g, onnx.load(tmp), z_dim))
        if not ok2:
            raise ExportError(message2)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return VariantResult(variant, out, out.stat().st_size, rows, True, message)


def variant_path(out: Path, variant: str) -> Path:
    return out if variant == "fp32" else out.with_name(f"{out.stem}-{variant}{out.suffix}")
