"""A DCGAN generator exported by this project (a shipped NAME.onnx) back as a PyTorch module, for distillation.

The shipped models keep only their ONNX files: the torch weights of CPU runs are not in the repository
(runs/ is not committed). The export folds each BatchNorm into the ConvTranspose before it, so the
ONNX holds the ConvTranspose weights and biases under their torch names (net.0.weight, ...) and no
norms, and it writes the run card into the file's metadata (architecture, recipe, classes and their
counts, ...). This module puts the weights back into that architecture and "unfolds" every
BatchNorm into one that changes nothing: its running statistics are the mean and variance its input
has over fixed latents, and its gain and bias undo them (gain = sqrt(var + eps), bias = mean). In eval
mode it is then exactly the identity; in training mode, where a batch's own statistics replace the
running ones, it stays close to it, so a student pruned from this G starts where a student pruned
from the original torch G would (trainer.distill).

Before it returns, the module's faces are compared with onnxruntime's for 64 seeds (and their
classes): a file this cannot read faithfully is refused, not distilled.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.errors import UserError, shorten
from core.ort import open_session
from core.parity import TOLERANCE
from core.seeds import latents, seed_classes, seed_range
from networks import build_generator

# A file's weight type -> its export variant, whose parity gate (max |torch - onnxruntime|) the read-back
# G must meet: an fp16 file also computes in float16. int8 files (quantised weights, QuantizeLinear
# nodes) are not read back.
VARIANT_OF = {np.float32: "fp32", np.float16: "fp16"}


def _read(path: Path) -> tuple[tuple[dict[str, torch.Tensor], float], dict[str, str]]:
    """((the file's weights by name as float32, the parity tolerance their type allows), its metadata)."""
    import onnx
    from onnx import numpy_helper

    if not path.is_file():
        raise UserError(f"no such ONNX file: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and friends: any of them means "not an ONNX file"
        raise UserError(f"{path} is not an ONNX file ({shorten(exc, 80)})") from None
    arrays = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    kinds = {a.dtype.type for a in arrays.values() if a.dtype.kind == "f"}
    if not kinds or not kinds <= set(VARIANT_OF) or any(n.op_type == "QuantizeLinear" for n in model.graph.node):
        raise UserError(f"{path.name} is not a float32 or float16 export (int8 files cannot be read back)")
    weights = {k: torch.from_numpy(a.astype(np.float32)) for k, a in arrays.items() if a.dtype.kind == "f"}
    return (weights, max(TOLERANCE[VARIANT_OF[k]] for k in kinds)), {p.key: p.value for p in model.metadata_props}


def _inputs(g: nn.Module, seeds: range | list[int], weights: list[float] | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    z = torch.from_numpy(latents(seeds, g.z_dim))
    if not g.n_classes:
        return z, None
    return z, torch.from_numpy(seed_classes(seeds, g.z_dim, weights or [1.0] * g.n_classes))


def _unfold_norms(g: nn.Module, probe_n: int = 512) -> None:
    """Set every BatchNorm of a DCGAN G (whose convolutions hold the folded weights) to the
    identity in eval mode, with running statistics measured over the BatchNorm-recalibration seeds."""
    z, y = _inputs(g, seed_range("BatchNorm", probe_n), None)
    x = torch.cat([z, g.classes(y, len(z))], 1) if y is not None else z
    x = x.reshape(len(z), -1, 1, 1)
    with torch.no_grad():
        for layer in g.net:
            if isinstance(layer, nn.BatchNorm2d):
                mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
                layer.running_mean.copy_(mean)
                layer.running_var.copy_(var)
                layer.weight.copy_(torch.sqrt(var + layer.eps))
                layer.bias.copy_(mean)
                layer.eval()
            x = layer(x)


def card_of(meta: dict[str, str]) -> dict:
    """The run card an exported file carries in its metadata (export/onnx_export.py's metadata())."""
    def number(key: str, kind: type) -> float | int | None:
        try:
            return kind(float(meta[key]))
        except (KeyError, ValueError):
            return None
    return {"arch": json.loads(meta["architecture"]),
            "recipe": {"name": meta.get("recipe", "unknown"), "description": meta.get("recipe_description", "")},
            "epochs": number("epochs", float), "steps": number("steps", int), "seconds": number("train_seconds", float),
            "hardware": meta.get("hardware") or None, "dataset": json.loads(meta.get("dataset", "{}")),
            "classes": json.loads(meta.get("classes", "[]")), "class_counts": json.loads(meta.get("class_counts", "[]"))}


def load_onnx_generator(path: str | Path) -> tuple[nn.Module, dict]:
    """(G in eval mode on the CPU, the run card from the file's metadata) from an exported NAME.onnx."""
    path = Path(path)
    (weights, tolerance), meta = _read(path)
    try:
        card = card_of(meta)
    except (KeyError, ValueError):
        raise UserError(f"{path.name} has no architecture in its metadata: not exported by this project's "
                        f"export (python -m export.to_onnx)") from None
    arch = card["arch"]
    if arch.get("name") != "dcgan" or arch.get("class_norm"):
        raise UserError(f"only a DCGAN generator without class norms can be read back from ONNX; {path.name} is {arch}")
    g = build_generator(arch)
    state = g.state_dict()
    convs = {k for k in state if k.endswith((".weight", ".bias")) and isinstance(g.get_submodule(k.rsplit(".", 1)[0]), nn.ConvTranspose2d)}
    missing = [k for k in sorted(convs) if k not in weights or weights[k].shape != state[k].shape]
    if missing:
        raise UserError(f"{path.name} does not hold the ConvTranspose weights of {arch} (missing or misshapen: "
                        f"{', '.join(missing[:3])})")
    with torch.no_grad():
        for k in convs:
            state[k].copy_(weights[k])
    _unfold_norms(g)
    g.eval()
    check_parity(g, path, card.get("class_counts"), tolerance)
    return g, card


def check_parity(g: nn.Module, path: Path, weights: list[float] | None, tolerance: float, n: int = 64) -> float:
    """Max |G - onnxruntime| over seeds 0..n-1 (each seed's own class); UserError above `tolerance`."""
    z, y = _inputs(g, range(n), weights)
    feed = {"z": z.numpy(), **({"class": y.numpy()} if y is not None else {})}  # the export's input names
    want = open_session(path, "cpu").session.run(None, feed)[0]
    with torch.no_grad():
        got = g(z, y).numpy()
    diff = float(np.abs(got - want).max())
    if diff > tolerance:
        raise UserError(f"{path.name} read back into torch differs from onnxruntime by {diff:.4f} (tolerance "
                        f"{tolerance:g}): not a plain DCGAN export")
    return diff
