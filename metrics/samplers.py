"""Generators as samplers for the metrics: z (and classes) -> images, from an .onnx file or a run's
Generator.pth (rebuilt by networks/, the architectures' package).

    sample, z_dim, info = load_sampler("demo/models/generator.onnx")
    images = sample(latents(range(8), z_dim))          # float32 [8, 3, 64, 64] in [-1, 1]
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core.errors import UserError
from metrics.report import Sampler


def load_sampler(path: str | Path, device: str = "cpu") -> tuple[Sampler, int, dict]:
    """(z[, classes] -> images, z_dim, what was loaded and where it runs, with its classes and their
    training frequencies) for an .onnx file or a Generator.pth."""
    path = Path(path)
    if path.suffix == ".onnx":
        from core.ort import model_classes, open_session

        if not path.is_file():
            raise UserError(f"generator not found: {path}")
        # The ONNX side takes what onnxruntime can do here (its CPU build beside a CUDA torch is common).
        s = open_session(path, "auto" if device == "cuda" else device)
        inp = s.session.get_inputs()[0]
        classes, weights = model_classes(s.session)

        def sample(z: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
            feeds = {inp.name: np.ascontiguousarray(z, np.float32)}
            if classes:
                feeds["class"] = np.ascontiguousarray(y, np.int64)
            return s.session.run(None, feeds)[0]
        return sample, int(inp.shape[1]), {"kind": "onnx", "path": str(path), "provider": s.provider,
                                           "classes": classes, "class_weights": weights}
    from networks.files import load_generator

    g, card = load_generator(path)
    classes = list(card.get("classes") or [])
    weights = list(card.get("class_counts") or [1] * len(classes))
    return torch_sampler(g, device), g.z_dim, {"kind": "pytorch", "path": str(path), "provider": device.upper(),
                                                "classes": classes, "class_weights": weights}


def torch_sampler(g, device) -> Sampler:
    """z (and classes) -> images through a PyTorch generator in eval mode on `device`."""
    import torch

    g = g.to(device).eval()

    def sample(z: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        with torch.no_grad():
            classes = None if y is None else torch.from_numpy(np.asarray(y, np.int64)).to(device)
            return g(torch.from_numpy(z).to(device), classes).float().cpu().numpy()
    return sample
