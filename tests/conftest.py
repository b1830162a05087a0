"""Shared fixtures: synthetic face-like images and tiny models, all made here (no real data needed)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED_DATA = ROOT.parent / "shared" / "data" / "anime-faces-64.zip"


def blob_image(rng: np.random.RandomState, size: int = 64) -> np.ndarray:
    """A coloured background with two coloured ellipses: enough structure for GAN and FID tests."""
    img = np.empty((size, size, 3), np.uint8)
    img[:] = rng.randint(0, 256, 3)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(2):
        cy, cx = rng.randint(size // 4, 3 * size // 4, 2)
        ry, rx = rng.randint(size // 8, size // 3, 2)
        img[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = rng.randint(0, 256, 3)
    return img


def make_folder(path: Path, n: int, seed: int = 0, ext: str = ".png") -> Path:
    rng = np.random.RandomState(seed)
    path.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(blob_image(rng)).save(path / f"img_{i:04d}{ext}")
    return path


@pytest.fixture(scope="session")
def blobs(tmp_path_factory) -> Path:
    """64 synthetic 64x64 PNGs in a folder."""
    return make_folder(tmp_path_factory.mktemp("blobs"), 64)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, blobs) -> Path:
    """A finished tiny training run (Generator.pth + generator.json) of the seed recipe."""
    from trainer.train import main

    out = tmp_path_factory.mktemp("runs") / "tiny"
    rc = main(["--data", str(blobs), "--recipe", "seed-dcgan", "--out", str(out), "--g-width", "8",
               "--d-width", "8", "--batch-size", "16", "--max-steps", "3", "--log-every", "1", "--quiet"])
    assert rc == 0
    return out


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    """A small exported generator whose random weights still give distinct faces for every seed."""
    import torch

    from export.onnx_export import fold_batchnorm, to_onnx_fp32, write_verified
    from trainer.models import Generator

    torch.manual_seed(0)
    g = Generator(z_dim=16, width=8).eval()  # PyTorch's default init: varied outputs, unlike N(0, 0.02)
    card = {"arch": {"name": "dcgan", "z_dim": 16, "g_width": 8}, "recipe": {"name": "test"},
            "epochs": 0, "steps": 0}
    out = tmp_path_factory.mktemp("onnx") / "generator.onnx"
    res = write_verified(g, to_onnx_fp32(fold_batchnorm(g), 16), "fp32", out, card)
    assert res.passed, res.message
    return out
