"""Refining a found latent by gradient descent: the encoder's guess, then steps that make the
generator's face of it closer to the picture (pixel L1, and a pull towards the latent prior).

    z = refine(g, z0, images, steps=100)      # z0 [B, z_dim] from the encoder, images [B, 3, 64, 64]

PyTorch only: the runtime uses the encoder's guess as it is; `python -m trainer.encoder.refine`
refines one picture. How much it gains, and at what cost per face: docs/inversion.md.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def refine(g: torch.nn.Module, z0: torch.Tensor, images: torch.Tensor, y: torch.Tensor | None = None,
           steps: int = 100, lr: float = 0.05, prior: float = 1e-3) -> torch.Tensor:
    """Latents [B, z_dim] whose faces match `images` better than `z0`'s (the generator stays frozen)."""
    g.requires_grad_(False)
    z = z0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    for _ in range(steps):
        loss = F.l1_loss(g(z, y), images) + prior * z.pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return z.detach()
