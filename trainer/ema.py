"""An exponential moving average of G's weights, by half-life in images (StyleGAN2's convention).

Updated with one fused lerp over all tensors; the decay is computed on the host from counters the
trainer already has, so an update never waits for the GPU.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn


def ema_beta(half_life_kimg: float, rampup: float, images_seen: int, batch: int) -> float:
    """Per-step decay for a half-life in images, ramped up early: the half-life is at most `rampup`
    times the images seen so far, so the average follows G at first and settles later."""
    half_life = half_life_kimg * 1000
    if rampup > 0:
        half_life = min(half_life, images_seen * rampup)
    return 0.5 ** (batch / half_life) if half_life > 0 else 0.0


def half_life_kimg_of_decay(decay: float, batch: int) -> float:
    """The half-life (thousands of images) of a fixed per-step decay at this batch size."""
    return 0.0 if decay <= 0 else round(batch * math.log(0.5) / math.log(decay) / 1000, 3)


class EMA:
    def __init__(self, g: nn.Module, half_life_kimg: float, rampup: float):
        self.module = copy.deepcopy(g).eval().requires_grad_(False)
        self.half_life_kimg, self.rampup = half_life_kimg, rampup
        self._dst = list(self.module.parameters())
        self._dst_buffers = list(self.module.buffers())

    @torch.no_grad()
    def update(self, g: nn.Module, images_seen: int, batch: int) -> None:
        beta = ema_beta(self.half_life_kimg, self.rampup, images_seen, batch)
        src = [p.detach() for p in g.parameters()]
        torch._foreach_lerp_(self._dst, src, 1.0 - beta)  # dst += (1 - beta) * (src - dst)
        # Buffers (BatchNorm statistics) are copied, then measured again for the EMA weights at export.
        if self._dst_buffers:
            torch._foreach_copy_(self._dst_buffers, list(g.buffers()))

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        # Checkpoints from before this class hold torch.optim.swa_utils.AveragedModel's state.
        if "n_averaged" in state:
            state = {k.removeprefix("module."): v for k, v in state.items() if k != "n_averaged"}
        self.module.load_state_dict(state)
