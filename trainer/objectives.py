"""GAN objectives as plug-ins: each one owns its hyperparameters, losses, label draws, penalties and
clipping here, and registers itself by name.

An objective sees D's raw outputs (scores, or probabilities for `seed-bce`) and returns scalar
losses. `d_loss(real, fake)` takes the scores of a real batch and of k batches on the fake side
(generated images, and for conditional runs also real images with a wrong class: the seed report's
three pairs). `g_loss(fake, score_real)` gets a function that scores the real batch, for objectives
whose G term needs it (relativistic ones). `d_penalty` gets a function scoring images with D, for
penalties on inputs, computed in float32 outside any autocast region. Every quantity stays on the
device: no value is read back to the host inside a step.

Hyperparameters live in each objective's `Params` dataclass; a recipe overrides them in
`loss_params`, and every field is also a trainer flag (`--r1-gamma 0.5`), so a new loss is one
class here.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from core.errors import UserError
from core.registry import Registry

Scores = Callable[[torch.Tensor], torch.Tensor]   # images -> D's scores [B]
OBJECTIVES: Registry[type] = Registry("loss")


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


def _input_grad_norm2(score: Scores, x: torch.Tensor) -> torch.Tensor:
    """||dD(x)/dx||^2 per sample, in float32."""
    x = x.detach().float().requires_grad_(True)
    with torch.autocast(x.device.type, enabled=False):
        (grad,) = torch.autograd.grad(score(x).sum(), x, create_graph=True)
    return grad.flatten(1).pow(2).sum(dim=1)


class Objective:
    name = ""
    probabilities = False        # D ends in a Sigmoid

    @dataclass
    class Params:
        pass

    def __init__(self, recipe):
        self.r = recipe
        self.p = self.params(getattr(recipe, "loss_params", {}) or {})

    @classmethod
    def params(cls, given: dict) -> "Objective.Params":
        known = {f.name for f in dataclasses.fields(cls.Params)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise UserError(f"loss {cls.name} has no parameter {', '.join(unknown)}; "
                            f"its parameters: {', '.join(sorted(known)) or 'none'}")
        return cls.Params(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in given.items()})

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake: torch.Tensor, score_real: Callable[[], torch.Tensor]) -> torch.Tensor:
        return -fake.mean()

    def d_penalty(self, score: Scores, real: torch.Tensor, fake: torch.Tensor, step: int) -> torch.Tensor | None:
        return None

    @torch.no_grad()
    def after_d_step(self, d: torch.nn.Module) -> None:
        pass


@OBJECTIVES.register("seed-bce")
class SeedBCE(Objective):
    """The seed report: D outputs probabilities; labels are drawn once per batch, U(a, b) rounded to
    two decimals (real U(0.7, 1.12), fake U(0, 0.3)); G minimises -log(D(G(z)) + 1e-6)."""

    name, probabilities = "seed-bce", True

    @dataclass
    class Params:
        real_label: tuple[float, float] = (1.0, 1.0)   # target for real images, drawn U(a, b) once per batch
        fake_label: tuple[float, float] = (0.0, 0.0)

    def _label(self, lo_hi: tuple[float, float], like: torch.Tensor) -> torch.Tensor | float:
        lo, hi = lo_hi
        if lo == hi:
            return lo
        u = torch.rand((), device=like.device)  # on the device: drawing it costs no host round trip
        return torch.round((lo + (hi - lo) * u) * 100) / 100

    def d_loss(self, real, fake):
        return seed_bce(real, self._label(self.p.real_label, real)) + seed_bce(fake, self._label(self.p.fake_label, fake))

    def g_loss(self, fake, score_real=None):
        return -torch.log(fake + 1e-6).mean()  # the seed's non-saturating loss, epsilon included


@OBJECTIVES.register("wgan")
class WGAN(Objective):
    """Wasserstein loss with the critic's weights clipped to +-clip after every D step."""

    name = "wgan"

    @dataclass
    class Params:
        clip: float = 0.01          # weight clipping; 0 = off

    def d_loss(self, real, fake):
        return fake.mean() - real.mean()

    @torch.no_grad()
    def after_d_step(self, d):
        if self.p.clip > 0:
            for p in d.parameters():
                p.clamp_(-self.p.clip, self.p.clip)


@OBJECTIVES.register("wgan-gp")
class WGANGP(Objective):
    """WGAN with a gradient penalty gp_lambda * (||grad D(x_hat)|| - 1)^2 on random interpolates."""

    name = "wgan-gp"

    @dataclass
    class Params:
        gp_lambda: float = 10.0     # gradient penalty weight

    d_loss = WGAN.d_loss

    def d_penalty(self, score, real, fake, step):
        if self.p.gp_lambda <= 0:
            return None
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
        x_hat = alpha * real.detach().float() + (1 - alpha) * fake.detach().float()
        return self.p.gp_lambda * ((_input_grad_norm2(score, x_hat) + 1e-12).sqrt() - 1).pow(2).mean()


@OBJECTIVES.register("hinge")
class Hinge(Objective):
    name = "hinge"

    def d_loss(self, real, fake):
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


@OBJECTIVES.register("rpgan")
class RpGAN(Objective):
    """Relativistic pairing (Jolicoeur-Martineau 2018; R3GAN, Huang et al. 2024): D scores real
    against fake in pairs, softplus(-(D(x) - D(G(z)))), G the reverse; with R1 (real) and R2
    (fake) penalties gamma/2 * E||grad D||^2, applied every reg_every steps and scaled by it."""

    name = "rpgan"

    @dataclass
    class Params:
        r1_gamma: float = 0.0       # R1 penalty on real images
        r2_gamma: float = 0.0       # R2 penalty on generated images
        reg_every: int = 1          # apply R1/R2 every N D steps (scaled by N)

    def d_loss(self, real, fake):
        return F.softplus(fake - real.repeat(fake.numel() // real.numel())).mean()  # each fake-side batch vs the reals

    def g_loss(self, fake, score_real):
        return F.softplus(score_real().detach() - fake).mean()

    def d_penalty(self, score, real, fake, step):
        p = self.p
        every = max(1, p.reg_every)
        if step % every or (p.r1_gamma <= 0 and p.r2_gamma <= 0):
            return None
        total = torch.zeros((), device=real.device)
        if p.r1_gamma > 0:
            total = total + p.r1_gamma / 2 * _input_grad_norm2(score, real).mean()
        if p.r2_gamma > 0:
            total = total + p.r2_gamma / 2 * _input_grad_norm2(score, fake).mean()
        return total * every


def objective_for(recipe) -> Objective:
    return OBJECTIVES[recipe.loss](recipe)


def parameter_fields() -> dict[str, type]:
    """Every objective's hyperparameters, name -> type (one trainer flag each)."""
    return {name: tp for _, cls in OBJECTIVES.items() for name, tp in typing.get_type_hints(cls.Params).items()}


def owner_of(param: str) -> list[str]:
    return [name for name, cls in OBJECTIVES.items() if param in {f.name for f in dataclasses.fields(cls.Params)}]
