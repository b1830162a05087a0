"""The training step: n_critic D steps, then one G step, all on the device; and rewarm(), which
refills the optimisers' moments of a run that starts from trained networks without moving them.

D sees three kinds of pairs when the recipe is conditional and `mismatch` > 0 (the original
report's CGAN): a real image with its own class (real), a generated image with the class it was made for
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


def real_batch(run: RunState, perm: torch.Tensor, index: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(images, classes) of batch `index` of the epoch; `perm` lives on the device: all device work."""
    start = run.rank * run.n_local + index * run.local_batch  # each process owns one shard
    idx = perm[start:start + run.local_batch]
    x = run.images[idx].float().div_(127.5).sub_(1.0)
    if run.recipe.flip:
        flip = torch.rand(x.shape[0], device=run.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    x = x.contiguous(memory_format=torch.channels_last) if run.channels_last else x
    return x, (run.labels[idx] if run.labels is not None else None)


def generate(run: RunState, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    with torch.autocast(run.device.type, torch.bfloat16, enabled=run.bf16):
        return run.g_forward(z, y).float()


def score(run: RunState, d, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """D's scores (through DiffAugment when the recipe has it)."""
    if run.recipe.diffaug:
        x = diff_augment(x, run.recipe.diffaug)
    with torch.autocast(run.device.type, torch.bfloat16, enabled=run.bf16):
        return d(x, y).float()


def score_groups(run: RunState, groups: list[tuple[torch.Tensor, torch.Tensor | None]]) -> list[torch.Tensor]:
    """Scores of several (images, classes) groups: one forward of D for all of them, or one forward
    each when D normalises over the batch (BatchNorm), so each group keeps its own statistics."""
    if run.d_batchwise or len(groups) == 1:
        return [score(run, run.d_forward, x, y) for x, y in groups]
    xs = torch.cat([x for x, _ in groups])
    ys = torch.cat([y for _, y in groups]) if groups[0][1] is not None else None
    return list(score(run, run.d_forward, xs, ys).split([len(x) for x, _ in groups]))


def wrong_classes(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Each class moved to a different one, uniformly among the others."""
    return (y + torch.randint(1, n_classes, y.shape, device=y.device)) % n_classes


def d_accuracy(run: RunState, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Share of real scores on the real side of D's boundary and fakes on the fake side."""
    t = 0.5 if run.objective.probabilities else 0.0
    return ((real > t).float().mean() + (fake < t).float().mean()) / 2


def apply_schedules(run: RunState) -> None:
    """Cosine schedules of the recipe, from host counters (no device read): lr, beta2, loss parameters."""
    sched = run.recipe.schedule
    if not sched:
        return
    t = min(1.0, run.images_seen / max(1.0, float(sched["kimg"]) * 1000))
    w = 0.5 * (1 - math.cos(math.pi * t))
    value = {k: a + (b - a) * w for k, (a, b) in ((k, v) for k, v in sched.items() if k != "kimg")}
    for opt, key in ((run.opt_g, "lr_g"), (run.opt_d, "lr_d")):
        for group in opt.param_groups:
            if key in value:
                group["lr"] = value[key]
            if "beta2" in value and "betas" in group:
                group["betas"] = (group["betas"][0], value["beta2"])
    for key, v in value.items():
        if hasattr(run.objective.p, key):
            setattr(run.objective.p, key, type(getattr(run.objective.p, key))(v))


def train_step(run: RunState, reals: list[tuple[torch.Tensor, torch.Tensor | None]]) -> None:
    """n_critic D steps (one per real batch), then one G step; statistics stay on the device."""
    recipe, obj = run.recipe, run.objective
    # With one D step per G step, one batch of fakes serves both steps, as in the original report.
    share_fakes = recipe.n_critic == 1
    mismatch = recipe.mismatch if run.n_classes > 1 else 0.0
    d_alone = run.images_seen < recipe.d_warmup_kimg * 1000  # a fine-tune's first steps: D learns, G waits
    for real, y in reals:
        z = torch.randn(real.shape[0], recipe.z_dim, device=run.device)
        with torch.set_grad_enabled(share_fakes and not d_alone):
            fake = generate(run, z, y)  # made for the real batch's classes
        groups = [(real, y), (fake.detach(), y)] + ([(real, wrong_classes(y, run.n_classes))] if mismatch else [])
        scores = score_groups(run, groups)
        d_real, d_fake = scores[0], scores[1]
        loss_d = obj.d_loss(d_real, d_fake)
        if mismatch:
            loss_d = (1 - mismatch) * loss_d + mismatch * obj.d_loss(d_real, scores[2])
        penalty = obj.d_penalty(lambda x, y=y: run.d_wrapped(x, y), real, fake, run.step)
        if penalty is not None:
            loss_d = loss_d + penalty
        run.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        run.opt_d.step()
        obj.after_d_step(run.d)
    real, y = reals[-1]
    if d_alone:  # G's loss as it stands, for the log; no G step and no EMA update
        with torch.no_grad():
            loss_g = obj.g_loss(d_fake.detach(), lambda: d_real.detach())
        _count(run, loss_d, loss_g, d_real, d_fake)
        return
    if not share_fakes:
        fake = generate(run, torch.randn(run.local_batch, recipe.z_dim, device=run.device), y)
    run.d.requires_grad_(False)  # D frozen: the G step computes no gradients for D's weights
    try:
        loss_g = obj.g_loss(score(run, run.d_forward_frozen, fake, y), lambda: score(run, run.d_forward_frozen, real, y))
        run.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
    finally:
        run.d.requires_grad_(True)
    run.opt_g.step()
    if run.ema:
        run.ema.update(run.g, (run.step + 1) * recipe.batch_size, recipe.batch_size)  # half-lives count G's images
    _count(run, loss_d, loss_g, d_real, d_fake)


def _count(run: RunState, loss_d: torch.Tensor, loss_g: torch.Tensor, d_real: torch.Tensor, d_fake: torch.Tensor) -> None:
    """The step's statistics, summed on the device (read every --log-every steps)."""
    values = torch.stack([loss_d.detach(), loss_g.detach(), d_real.detach().mean(), d_fake.detach().mean(),
                          d_accuracy(run, d_real.detach(), d_fake.detach())])
    run.sums += values
    run.epoch_sums += values
    run.n_sums += 1
    run.n_epoch += 1


def rewarm(run: RunState, steps: int | None = None) -> int:
    """Refill the optimisers' moments after a compact resume: `steps` training steps with every
    learning rate at 0 and the EMA left alone, on batches from a fixed shuffle (counters unchanged).
    Default: three time constants of Adam's second moment, 1 / (1 - beta2), capped at 100 steps."""
    recipe = run.recipe
    if steps is None:
        steps = min(100, math.ceil(3 / max(1e-3, 1 - recipe.beta2))) if recipe.optimizer == "adam" else 30
    if steps <= 0:
        return 0
    opts = (run.opt_g, run.opt_d)
    saved_lr = [[g["lr"] for g in o.param_groups] for o in opts]
    ema, run.ema = run.ema, None
    # The run's random streams are put back afterwards: the resumed run draws what it would have drawn.
    rng_cpu = torch.get_rng_state()
    rng_cuda = torch.cuda.get_rng_state(run.device) if run.device.type == "cuda" else None
    buffers = [b.detach().clone() for net in (run.g, run.d) for b in net.buffers()]  # BatchNorm, spectral norm
    perm = torch.randperm(len(run.images), generator=torch.Generator().manual_seed(7)).to(run.device)
    try:
        for o in opts:
            for g in o.param_groups:
                g["lr"] = 0.0
        for i in range(steps):
            base = (i * recipe.n_critic) % max(1, run.batches_per_epoch - recipe.n_critic + 1)
            train_step(run, [real_batch(run, perm, base + j) for j in range(recipe.n_critic)])
    finally:
        for o, lrs in zip(opts, saved_lr):
            for g, lr in zip(o.param_groups, lrs):
                g["lr"] = lr
        run.ema = ema
        with torch.no_grad():
            for b, saved in zip([b for net in (run.g, run.d) for b in net.buffers()], buffers):
                b.copy_(saved)
        torch.set_rng_state(rng_cpu)
        if rng_cuda is not None:
            torch.cuda.set_rng_state(rng_cuda, run.device)
        run.sums.zero_()
        run.epoch_sums.zero_()
        run.n_sums = run.n_epoch = 0
    return steps
