"""GAN objectives. Each returns a scalar loss; D's side also gets both raw scores for logging."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def seed_bce(p: torch.Tensor, target: float) -> torch.Tensor:
    """Binary cross-entropy on probabilities, written out because the seed report uses targets
    above 1 (real labels up to 1.12), which torch.nn.BCELoss rejects. BCE is linear in the target,
    so this is the seed's arithmetic exactly; logs are clamped at -100 as BCELoss does."""
    log_p = torch.clamp(torch.log(p), min=-100)
    log_1mp = torch.clamp(torch.log(1 - p), min=-100)
    return -(target * log_p + (1 - target) * log_1mp).mean()


def d_loss(kind: str, real: torch.Tensor, fake: torch.Tensor,
           real_target: float = 1.0, fake_target: float = 0.0) -> torch.Tensor:
    if kind in ("seed-bce", "bce"):
        return seed_bce(real, real_target) + seed_bce(fake, fake_target)
    if kind in ("wgan", "wgan-gp"):
        return fake.mean() - real.mean()
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    raise ValueError(f"unknown loss {kind!r}")


def g_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    if kind in ("seed-bce", "bce"):
        return -torch.log(fake + 1e-6).mean()  # the seed's non-saturating loss, epsilon included
    if kind in ("wgan", "wgan-gp", "hinge"):
        return -fake.mean()
    raise ValueError(f"unknown loss {kind!r}")


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """(||grad D(x_hat)||_2 - 1)^2 on random interpolates x_hat (Gulrajani et al.)."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    scores = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
