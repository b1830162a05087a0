"""DCGAN-family generator and discriminator for 64x64 RGB images."""
from __future__ import annotations

import torch
from torch import nn


class Generator(nn.Module):
    """z [B, z_dim] (or [B, z_dim, 1, 1]) -> image [B, 3, 64, 64] in [-1, 1].

    ConvTranspose stack 4x4 -> 8 -> 16 -> 32 -> 64 with channels 8w, 4w, 2w, w, 3,
    BatchNorm + ReLU between layers and Tanh at the end (Radford et al.). With width=128
    this is exactly the seed report's 100->1024->512->256->128->3 generator, biases included.
    """

    def __init__(self, z_dim: int = 100, width: int = 128):
        super().__init__()
        self.z_dim, self.width = z_dim, width
        chans = [z_dim, width * 8, width * 4, width * 2, width]
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(chans, chans[1:])):
            stride, pad = (1, 0) if i == 0 else (2, 1)
            layers += [nn.ConvTranspose2d(cin, cout, 4, stride, pad), nn.BatchNorm2d(cout), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(width, 3, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # Reshape inside the module so the exported graph takes z as [batch, z_dim].
        return self.net(z.reshape(-1, self.z_dim, 1, 1))


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        # GroupNorm with one group normalises over (C, H, W) per sample: layer norm for conv
        # features, which keeps the WGAN-GP penalty per-sample as the paper requires.
        return nn.GroupNorm(1, channels)
    return nn.Identity()


class Discriminator(nn.Module):
    """image [B, 3, 64, 64] -> score [B].

    Conv 3->w->2w->4w->8w->1 (kernel 4, stride 2, pad 1; last stride 2 pad 0), LeakyReLU(0.2),
    a norm after every hidden conv but the first (as in DCGAN), Sigmoid only for BCE recipes.
    norm: batch | layer | none | spectral (spectral norm on every conv, no other norm).
    """

    def __init__(self, width: int = 64, norm: str = "batch", sigmoid: bool = False):
        super().__init__()
        if norm not in ("batch", "layer", "none", "spectral"):
            raise ValueError(f"unknown discriminator norm {norm!r}")
        chans = [3, width, width * 2, width * 4, width * 8]
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(chans, chans[1:])):
            layers.append(self._conv(cin, cout, 4, 2, 1, norm))
            if i > 0:
                layers.append(_norm(norm, cout))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        layers.append(self._conv(width * 8, 1, 4, 2, 0, norm))
        if sigmoid:
            layers.append(nn.Sigmoid())
        self.net = nn.Sequential(*layers)

    @staticmethod
    def _conv(cin: int, cout: int, k: int, s: int, p: int, norm: str) -> nn.Module:
        conv = nn.Conv2d(cin, cout, k, s, p)
        return nn.utils.parametrizations.spectral_norm(conv) if norm == "spectral" else conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).reshape(x.shape[0])


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights N(0, 0.02), norm weights N(1, 0.02), biases kept.

    Conv biases keep PyTorch's default initialisation, as in the seed report.
    """
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        w = module.parametrizations.weight.original if hasattr(module, "parametrizations") else module.weight
        nn.init.normal_(w, 0.0, 0.02)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def build_generator(arch: dict) -> Generator:
    """Rebuild G from the architecture block of generator.json."""
    if arch.get("name", "dcgan") != "dcgan":
        raise ValueError(f"unknown generator architecture {arch.get('name')!r}")
    return Generator(z_dim=int(arch["z_dim"]), width=int(arch["g_width"]))


@torch.no_grad()
def recalibrate_batchnorm(g: Generator, batches: int = 32, batch_size: int = 256, first_seed: int = 10**6) -> Generator:
    """Re-estimate BatchNorm running statistics for G's current weights, in place.

    An EMA of weights does not come with matching BatchNorm statistics (averaging the running
    means and variances of past generators gives grey images in eval mode), so they are measured
    again: exact averages over `batches` x `batch_size` latents from fixed seeds. Uses no torch RNG,
    so a training run's random stream is untouched.
    """
    from trainer.latents import latents_for_seeds

    norms = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        return g
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    was_training = g.training
    g.train()
    device = next(g.parameters()).device
    for b in range(batches):
        seeds = range(first_seed + b * batch_size, first_seed + (b + 1) * batch_size)
        g(torch.from_numpy(latents_for_seeds(seeds, g.z_dim)).to(device))
    for m, momentum in saved:
        m.momentum = momentum
    return g.train(was_training)
