"""GAN objectives as plug-ins: each one keeps its losses, label draws, penalties and clipping here.

An objective sees D's raw outputs (scores, or probabilities for `seed-bce`) and returns scalar
losses; `d_penalty` gets D itself for penalties on inputs, computed in float32 outside any autocast
region. Every quantity stays on the device: no value is read back to the host inside a step.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import UserError


def seed_bce(p: torch.Tensor, target: torch.Tensor | float) -> torch.Tensor:
    """torch.nn.BCELoss's arithmetic (values and gradients) for targets up to 1.12 and beyond.

    The seed report feeds BCELoss real labels up to 1.12, which BCELoss itself refuses. BCE is
    linear in the target, so target * BCE(p, 1) + (1 - target) * BCE(p, 0) equals it for every
    target; both terms come from torch's binary_cross_entropy, so the logs are clamped at -100 and
    the gradient is (p - y) / max(p (1 - p), 1e-12): finite at p = 0 and 1, and fading to zero once
    D saturates, as in the report's runs. (A log guarded only against 0 keeps a gradient of -1 on
    D's logit there, and a log clamped after the fact gives NaN.)
    """
    return (target * F.binary_cross_entropy(p, torch.ones_like(p))
            + (1 - target) * F.binary_cross_entropy(p, torch.zeros_like(p)))


def _input_grad_norm2(d: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """||dD(x)/dx||^2 per sample, in float32."""
    x = x.detach().float().requires_grad_(True)
    with torch.autocast(x.device.type, enabled=False):
        (grad,) = torch.autograd.grad(d(x).sum(), x, create_graph=True)
    return grad.flatten(1).pow(2).sum(dim=1)


class Objective:
    name = ""
    probabilities = False        # D ends in a Sigmoid
    relativistic = False         # G's loss also needs D's scores of real images

    def __init__(self, recipe):
        self.r = recipe

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        return -fake.mean()

    def d_penalty(self, d: nn.Module, real: torch.Tensor, fake: torch.Tensor, step: int) -> torch.Tensor | None:
        return None

    @torch.no_grad()
    def after_d_step(self, d: nn.Module) -> None:
        pass


class SeedBCE(Objective):
    """The seed report: D outputs probabilities; labels are drawn once per batch, U(a, b) rounded to
    two decimals (real U(0.7, 1.12), fake U(0, 0.3)); G minimises -log(D(G(z)) + 1e-6)."""

    name, probabilities = "seed-bce", True

    def _label(self, lo_hi: tuple[float, float], like: torch.Tensor) -> torch.Tensor | float:
        lo, hi = lo_hi
        if lo == hi:
            return lo
        u = torch.rand((), device=like.device)  # on the device: drawing it costs no host round trip
        return torch.round((lo + (hi - lo) * u) * 100) / 100

    def d_loss(self, real, fake):
        return seed_bce(real, self._label(self.r.real_label, real)) + seed_bce(fake, self._label(self.r.fake_label, fake))

    def g_loss(self, fake, real=None):
        return -torch.log(fake + 1e-6).mean()  # the seed's non-saturating loss, epsilon included


class WGAN(Objective):
    """Wasserstein loss with the critic's weights clipped to +-clip after every D step."""

    name = "wgan"

    def d_loss(self, real, fake):
        return fake.mean() - real.mean()

    @torch.no_grad()
    def after_d_step(self, d):
        if self.r.clip > 0:
            for p in d.parameters():
                p.clamp_(-self.r.clip, self.r.clip)


class WGANGP(WGAN):
    """WGAN with a gradient penalty gp_lambda * (||grad D(x_hat)|| - 1)^2 on random interpolates."""

    name = "wgan-gp"

    def d_penalty(self, d, real, fake, step):
        if self.r.gp_lambda <= 0:
            return None
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
        x_hat = alpha * real.detach().float() + (1 - alpha) * fake.detach().float()
        return self.r.gp_lambda * ((_input_grad_norm2(d, x_hat) + 1e-12).sqrt() - 1).pow(2).mean()


class Hinge(Objective):
    name = "hinge"

    def d_loss(self, real, fake):
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


class RpGAN(Objective):
    """Relativistic pairing (Jolicoeur-Martineau 2018; R3GAN, Huang et al. 2024): D scores real
    against fake in pairs, softplus(-(D(x) - D(G(z)))), G the reverse; with R1 (real) and R2
    (fake) penalties gamma/2 * E||grad D||^2, applied every reg_every steps and scaled by it."""

    name, relativistic = "rpgan", True

    def d_loss(self, real, fake):
        return F.softplus(fake - real).mean()

    def g_loss(self, fake, real=None):
        return F.softplus(real - fake).mean()

    def d_penalty(self, d, real, fake, step):
        r = self.r
        every = max(1, r.reg_every)
        if step % every or (r.r1_gamma <= 0 and r.r2_gamma <= 0):
            return None
        total = torch.zeros((), device=real.device)
        if r.r1_gamma > 0:
            total = total + r.r1_gamma / 2 * _input_grad_norm2(d, real).mean()
        if r.r2_gamma > 0:
            total = total + r.r2_gamma / 2 * _input_grad_norm2(d, fake).mean()
        return total * every


OBJECTIVES = {cls.name: cls for cls in (SeedBCE, WGAN, WGANGP, Hinge, RpGAN)}


def objective_for(recipe) -> Objective:
    if recipe.loss not in OBJECTIVES:
        raise UserError(f"unknown loss {recipe.loss!r}; choose one of: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[recipe.loss](recipe)

