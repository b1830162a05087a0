"""Differentiable augmentation (Zhao et al. 2020, arXiv:2006.10738), applied to both real and
fake images before D so that D cannot memorise the training set. Written from the paper's
description: colour (brightness, saturation, contrast), translation by up to 1/8 of the image
with zero padding, and cutout of a square half the image size."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from core.errors import UserError


def _color(x: torch.Tensor) -> torch.Tensor:
    b = x.shape[0]
    x = x + (torch.rand(b, 1, 1, 1, device=x.device) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (torch.rand(b, 1, 1, 1, device=x.device) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(b, 1, 1, 1, device=x.device) + 0.5) + mean


def _translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (b,), device=x.device)
    dx = torch.randint(-sw, sw + 1, (b,), device=x.device)
    # Shift via a gather into a zero-padded copy: one kernel, differentiable w.r.t. x.
    padded = F.pad(x, (sw, sw, sh, sh))
    ys = (torch.arange(h, device=x.device)[None, :] - dy[:, None] + sh).clamp(0, h + 2 * sh - 1)
    xs = (torch.arange(w, device=x.device)[None, :] - dx[:, None] + sw).clamp(0, w + 2 * sw - 1)
    bi = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bi, ys[:, :, None], xs[:, None, :]]
    return out.permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    yy = torch.arange(h, device=x.device)[None, :, None]
    xx = torch.arange(w, device=x.device)[None, None, :]
    inside = ((yy - cy).abs() < ch // 2) & ((xx - cx).abs() < cw // 2)
    return x * (~inside).unsqueeze(1).to(x.dtype)


_OPS = {"color": _color, "translation": _translation, "cutout": _cutout}


def parse_policy(policy: str) -> list[str]:
    names = [p.strip() for p in policy.split(",") if p.strip()]
    bad = [n for n in names if n not in _OPS]
    if bad:
        raise UserError(f"unknown DiffAugment op(s) {bad}; choose from {sorted(_OPS)}")
    return names


def diff_augment(x: torch.Tensor, policy: str) -> torch.Tensor:
    for name in parse_policy(policy):
        x = _OPS[name](x)
    return x
