"""ResNet generator and discriminator for 64x64 images, after SNGAN's 64x64 networks (Miyato et
al. 2018; the Mimicry benchmark's SNGAN-64), arranged so the exported generator stays small and fast.

Generator: a 4x4 stem from z, four up-blocks (nearest x2, conv3x3-BN-ReLU-conv3x3-BN, plus a 1x1
shortcut, then ReLU) and a conv3x3 to RGB with Tanh. Norms sit after their convolutions, so the
exporter folds every one of them away; the shortcut's 1x1 conv runs before the upsampling, where it
costs a quarter. With norm "none" (R3GAN's choice, Huang et al. 2024) the residual branch starts at
zero, so each block begins as its shortcut.

Discriminator: SNGAN's: an optimised first block at 64x64, down-blocks to 4x4, one block at 4x4,
LeakyReLU(0.2), a sum over positions and a linear score; spectral norm on every layer or none
(for objectives with gradient penalties).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainer.networks.common import spectral_norm


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def channels(width: int, cap: int, stages: int = 5) -> list[int]:
    """Channels at 4, 8, 16, 32, 64 px: `width` at 64 px, doubling toward 4 px, at most `cap`."""
    return [min(cap, width * 2 ** (stages - 1 - i)) for i in range(stages)]


class UpBlock(nn.Module):
    FOLD = (("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(self, cin: int, cout: int, norm: str):
        super().__init__()
        batch = norm == "batch"
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(cout) if batch else nn.Identity()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(cout) if batch else nn.Identity()
        self.skip = nn.Conv2d(cin, cout, 1)
        if not batch:  # no norm to tame the sum: start each residual branch at zero
            nn.init.zeros_(self.conv2.weight)
            nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(_up(x))))
        return F.relu(self.bn2(self.conv2(h)) + _up(self.skip(x)))


class Generator(nn.Module):
    NORMS = ("batch", "none")

    def __init__(self, z_dim: int = 128, width: int = 32, cap: int = 512, norm: str = "batch"):
        super().__init__()
        if norm not in self.NORMS:
            raise ValueError(f"the resnet generator takes norm {' | '.join(self.NORMS)}, not {norm!r}")
        self.z_dim, self.width, self.cap, self.norm = z_dim, width, cap, norm
        ch = channels(width, cap)
        # A 4x4 transposed convolution of a 1x1 input is a linear layer whose output is already an image.
        self.stem = nn.Sequential(nn.ConvTranspose2d(z_dim, ch[0], 4, 1, 0),
                                  nn.BatchNorm2d(ch[0]) if norm == "batch" else nn.Identity(), nn.ReLU(True))
        self.blocks = nn.Sequential(*[UpBlock(a, b, norm) for a, b in zip(ch, ch[1:])])
        self.to_rgb = nn.Conv2d(ch[-1], 3, 3, 1, 1)

    @classmethod
    def from_arch(cls, arch: dict) -> "Generator":
        return cls(int(arch["z_dim"]), int(arch["g_width"]), int(arch.get("g_cap", 512)), arch.get("g_norm", "batch"))

    def arch(self) -> dict:
        return {"name": "resnet", "z_dim": self.z_dim, "g_width": self.width, "g_cap": self.cap, "g_norm": self.norm}

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.stem(z.reshape(-1, self.z_dim, 1, 1))
        return torch.tanh(self.to_rgb(self.blocks(x)))


class DownBlock(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool, first: bool, sn: bool):
        super().__init__()
        wrap = spectral_norm if sn else (lambda m: m)
        self.first, self.down = first, down
        self.conv1 = wrap(nn.Conv2d(cin, cout, 3, 1, 1))
        self.conv2 = wrap(nn.Conv2d(cout, cout, 3, 1, 1))
        self.skip = wrap(nn.Conv2d(cin, cout, 1)) if (cin != cout or down) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.leaky_relu(x, 0.2)
        h = self.conv2(F.leaky_relu(self.conv1(h), 0.2))
        if self.down:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.first:  # SNGAN's optimised block: pool, then the 1x1 conv on the raw image
            s = self.skip(F.avg_pool2d(s, 2))
        else:
            s = self.skip(s) if self.skip is not None else s
            s = F.avg_pool2d(s, 2) if self.down else s
        return h + s


class Discriminator(nn.Module):
    NORMS = ("spectral", "none")

    def __init__(self, width: int = 64, norm: str = "spectral", cap: int = 1024, sigmoid: bool = False):
        super().__init__()
        if norm not in self.NORMS:
            raise ValueError(f"the resnet discriminator takes norm {' | '.join(self.NORMS)}, not {norm!r}")
        sn = norm == "spectral"
        ch = [min(cap, width * 2 ** i) for i in range(5)]  # 32, 16, 8, 4 and 4 px
        blocks = [DownBlock(3, ch[0], down=True, first=True, sn=sn)]
        blocks += [DownBlock(a, b, down=True, first=False, sn=sn) for a, b in zip(ch[:3], ch[1:4])]
        blocks += [DownBlock(ch[3], ch[4], down=False, first=False, sn=sn)]
        self.blocks = nn.Sequential(*blocks)
        self.score = spectral_norm(nn.Linear(ch[4], 1)) if sn else nn.Linear(ch[4], 1)
        self.sigmoid = sigmoid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.blocks(x), 0.2).sum(dim=(2, 3))
        s = self.score(h).reshape(x.shape[0])
        return torch.sigmoid(s) if self.sigmoid else s
