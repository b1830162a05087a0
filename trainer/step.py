"""The training step: n_critic D steps, then one G step, all on the device.

D sees three kinds of pairs when the recipe is conditional and `mismatch` > 0 (the seed report's
CGAN): a real image with its own class (real), a generated image with the class it was made for
(fake), and a real image with a wrong class (fake, weighted by `mismatch`). During the G step D's
weights are frozen, so back-propagation computes only what G needs.
"""
from __future__ import annotations

import math

import torch

from trainer.diffaug import diff_augment
from trainer.run_state import RunState


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffle of one epoch depends only on (seed, epoch), so a resumed run sees the same order."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def real_batch(s: RunState, perm: torch.Tensor, index: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(images, classes) of batch `index` of the epoch; `perm` lives on the device: all device work."""
    start = s.rank * s.n_local + index * s.local_batch  # each process owns one shard
    idx = perm[start:start + s.local_batch]
    x = s.images[idx].float().div_(127.5).sub_(1.0)
    if s.r.flip:
        flip = torch.rand(x.shape[0], device=s.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    x = x.contiguous(memory_format=torch.channels_last) if s.channels_last else x
    return x, (s.labels[idx] if s.labels is not None else None)


def generate(s: RunState, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    with torch.autocast(s.device.type, torch.bfloat16, enabled=s.bf16):
        return s.g_fwd(z, y).float()


def score(s: RunState, d, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """D's scores (through DiffAugment when the recipe has it)."""
    if s.r.diffaug:
        x = diff_augment(x, s.r.diffaug)
    with torch.autocast(s.device.type, torch.bfloat16, enabled=s.bf16):
        return d(x, y).float()


def score_groups(s: RunState, groups: list[tuple[torch.Tensor, torch.Tensor | None]]) -> list[torch.Tensor]:
    """Scores of several (images, classes) groups: one forward of D for all of them, or one forward
    each when D normalises over the batch (BatchNorm), so each group keeps its own statistics."""
    if s.d_batchwise or len(groups) == 1:
        return [score(s, s.d_fwd, x, y) for x, y in groups]
    xs = torch.cat([x for x, _ in groups])
    ys = torch.cat([y for _, y in groups]) if groups[0][1] is not None else None
    return list(score(s, s.d_fwd, xs, ys).split([len(x) for x, _ in groups]))


def wrong_classes(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Each class moved to a different one, uniformly among the others."""
    return (y + torch.randint(1, n_classes, y.shape, device=y.device)) % n_classes


def d_accuracy(s: RunState, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Share of real scores on the real side of D's boundary and fakes on the fake side."""
    t = 0.5 if s.objective.probabilities else 0.0
    return ((real > t).float().mean() + (fake < t).float().mean()) / 2


def apply_schedules(s: RunState) -> None:
    """Cosine schedules of the recipe, from host counters (no device read): lr, beta2, loss parameters."""
    sched = s.r.schedule
    if not sched:
        return
    t = min(1.0, s.images_seen / max(1.0, float(sched["kimg"]) * 1000))
    w = 0.5 * (1 - math.cos(math.pi * t))
    value = {k: a + (b - a) * w for k, (a, b) in ((k, v) for k, v in sched.items() if k != "kimg")}
    for opt, key in ((s.opt_g, "lr_g"), (s.opt_d, "lr_d")):
        for group in opt.param_groups:
            if key in value:
                group["lr"] = value[key]
            if "beta2" in value and "betas" in group:
                group["betas"] = (group["betas"][0], value["beta2"])
    for key, v in value.items():
        if hasattr(s.objective.p, key):
            setattr(s.objective.p, key, type(getattr(s.objective.p, key))(v))


def train_step(s: RunState, reals: list[tuple[torch.Tensor, torch.Tensor | None]]) -> None:
    """n_critic D steps (one per real batch), then one G step; statistics stay on the device."""
    r, obj = s.r, s.objective
    # With one D step per G step, one batch of fakes serves both steps, as in the seed report.
    share_fakes = r.n_critic == 1
    mismatch = r.mismatch if s.n_classes > 1 else 0.0
    d_alone = s.images_seen < r.d_warmup_kimg * 1000  # a fine-tune's first steps: D learns, G waits
    for real, y in reals:
        z = torch.randn(real.shape[0], r.z_dim, device=s.device)
        with torch.set_grad_enabled(share_fakes and not d_alone):
            fake = generate(s, z, y)  # made for the real batch's classes
        groups = [(real, y), (fake.detach(), y)] + ([(real, wrong_classes(y, s.n_classes))] if mismatch else [])
        scores = score_groups(s, groups)
        d_real, d_fake = scores[0], scores[1]
        loss_d = obj.d_loss(d_real, d_fake)
        if mismatch:
            loss_d = (1 - mismatch) * loss_d + mismatch * obj.d_loss(d_real, scores[2])
        penalty = obj.d_penalty(lambda x, y=y: s.d_train(x, y), real, fake, s.step)
        if penalty is not None:
            loss_d = loss_d + penalty
        s.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        s.opt_d.step()
        obj.after_d_step(s.d)
    real, y = reals[-1]
    if d_alone:  # G's loss as it stands, for the log; no G step and no EMA update
        with torch.no_grad():
            loss_g = obj.g_loss(d_fake.detach(), lambda: d_real.detach())
        _count(s, loss_d, loss_g, d_real, d_fake)
        return
    if not share_fakes:
        fake = generate(s, torch.randn(s.local_batch, r.z_dim, device=s.device), y)
    s.d.requires_grad_(False)  # D frozen: the G step computes no gradients for D's weights
    try:
        loss_g = obj.g_loss(score(s, s.d_fwd_g, fake, y), lambda: score(s, s.d_fwd_g, real, y))
        s.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
    finally:
        s.d.requires_grad_(True)
    s.opt_g.step()
    if s.ema:
        s.ema.update(s.g, (s.step + 1) * r.batch_size, r.batch_size)  # half-lives count G's images
    _count(s, loss_d, loss_g, d_real, d_fake)


def _count(s: RunState, loss_d: torch.Tensor, loss_g: torch.Tensor, d_real: torch.Tensor, d_fake: torch.Tensor) -> None:
    """The step's statistics, summed on the device (read every --log-every steps)."""
    values = torch.stack([loss_d.detach(), loss_g.detach(), d_real.detach().mean(), d_fake.detach().mean(),
                          d_accuracy(s, d_real.detach(), d_fake.detach())])
    s.sums += values
    s.epoch_sums += values
    s.n_sums += 1
    s.n_epoch += 1
