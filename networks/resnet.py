"""ResNet generator and discriminator for 64x64 images, after SNGAN's 64x64 networks (Miyato et
al. 2018; the Mimicry benchmark's SNGAN-64), arranged so the exported generator stays small and fast.

Generator: a 4x4 stem from z, four up-blocks (nearest x2, conv3x3-BN-ReLU-conv3x3-BN, plus a 1x1
shortcut, then ReLU) and a conv3x3 to RGB with Tanh. Norms sit after their convolutions, so the
exporter folds every one of them away; the shortcut's 1x1 conv runs before the upsampling, where it
costs a quarter. With norm "none" (R3GAN's choice, Huang et al. 2024) the residual branch starts at
zero and the other convolutions keep the variance of their inputs (He initialisation), so each
block begins as its shortcut and activations keep their scale through the stack.

Discriminator: SNGAN's: an optimised first block at 64x64, down-blocks to 4x4, one block at 4x4,
LeakyReLU(0.2), a sum over positions and a linear score; spectral norm on every layer or none
(for objectives with gradient penalties).

Options: `attention` adds a SAGAN self-attention block at 32x32 in both (Zhang et al. 2019; the
attention weight starts at 0). Conditional networks (n_classes > 0) use class-conditional BatchNorm
in G (a gain and a bias per class) and a projection discriminator (Miyato and Koyama 2018).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from networks.common import (
    DISCRIMINATORS,
    GENERATORS,
    ClassInput,
    ConditionalBatchNorm,
    apply_norm,
    conditional_key,
    probability,
    refuse,
    spectral_norm,
)


def _up(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour 2x upsampling, the same values as F.interpolate(x, 2, "nearest")."""
    if torch.onnx.is_in_onnx_export():
        return F.interpolate(x, scale_factor=2.0, mode="nearest")  # one Resize node in the graph
    # Repeating columns then rows with expand and reshape: 5x faster than interpolate's CPU kernel
    # forward (its backward is slower, a net gain), which made this a tenth of a ResNet step.
    n, c, h, w = x.shape
    x = x.unsqueeze(-1).expand(n, c, h, w, 2).reshape(n, c, h, 2 * w)
    return x.unsqueeze(3).expand(n, c, h, 2, 2 * w).reshape(n, c, 2 * h, 2 * w)


def channels(width: int, cap: int, stages: int = 5) -> list[int]:
    """Channels at 4, 8, 16, 32, 64 px: `width` at 64 px, doubling toward 4 px, at most `cap`."""
    return [min(cap, width * 2 ** (stages - 1 - i)) for i in range(stages)]


def _he(conv: nn.Module, slope: float | None) -> None:
    """Variance-preserving initialisation for layers with no norm after them."""
    nonlinearity = "linear" if slope is None else "leaky_relu"
    nn.init.kaiming_normal_(conv.weight, a=slope or 0.0, nonlinearity=nonlinearity)
    nn.init.zeros_(conv.bias)


def _zero(conv: nn.Module) -> None:
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)


def _norm(ch: int, kind: str, n_classes: int) -> nn.Module:
    if kind == "none":
        return nn.Identity()
    return ConditionalBatchNorm(ch, n_classes) if n_classes else nn.BatchNorm2d(ch)


class SelfAttention(nn.Module):
    """SAGAN's self-attention (keys and values max-pooled, as in BigGAN); out = x + gamma * attention."""

    def __init__(self, ch: int, sn: bool = False):
        super().__init__()
        wrap = spectral_norm if sn else (lambda m: m)
        self.theta = wrap(nn.Conv2d(ch, max(1, ch // 8), 1, bias=False))
        self.phi = wrap(nn.Conv2d(ch, max(1, ch // 8), 1, bias=False))
        self.g = wrap(nn.Conv2d(ch, max(1, ch // 2), 1, bias=False))
        self.o = wrap(nn.Conv2d(max(1, ch // 2), ch, 1, bias=False))
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q = self.theta(x).flatten(2)                     # [b, c/8, hw]
        k = F.max_pool2d(self.phi(x), 2).flatten(2)      # [b, c/8, hw/4]
        v = F.max_pool2d(self.g(x), 2).flatten(2)        # [b, c/2, hw/4]
        attn = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # [b, hw, hw/4]
        # attn on the left keeps its gradient contiguous: with attn transposed, softmax's backward
        # first copied a [b, hw, hw/4] tensor, a tenth of a CPU training step at width 16
        out = (attn @ v.transpose(1, 2)).transpose(1, 2).reshape(b, -1, h, w)
        return x + self.gamma * self.o(out)


class UpBlock(nn.Module):
    FOLD = (("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(self, cin: int, cout: int, norm: str, n_classes: int = 0):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.bn1 = _norm(cout, norm, n_classes)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.bn2 = _norm(cout, norm, n_classes)
        self.skip = nn.Conv2d(cin, cout, 1)
        if norm == "none":  # no norm to tame the sum: start each residual branch at zero
            _he(self.conv1, 0.0)
            _zero(self.conv2)
            _he(self.skip, 0.0)  # its sum goes through a ReLU: He's ReLU gain keeps the scale

    def forward(self, x: torch.Tensor, onehot: torch.Tensor | None = None) -> torch.Tensor:
        h = F.relu(apply_norm(self.bn1, self.conv1(_up(x)), onehot))
        return F.relu(apply_norm(self.bn2, self.conv2(h), onehot) + _up(self.skip(x)))


@GENERATORS.register("resnet")
class Generator(nn.Module):
    NORMS = ("batch", "none")

    def __init__(self, z_dim: int = 128, width: int = 32, cap: int = 512, norm: str = "batch",
                 attention: bool = False, n_classes: int = 0):
        super().__init__()
        if norm not in self.NORMS:
            refuse("resnet", "g_norm", norm)
        self.z_dim, self.width, self.cap, self.norm = z_dim, width, cap, norm
        self.attention, self.n_classes = attention, n_classes
        self.classes = ClassInput(n_classes)
        ch = channels(width, cap)
        # A 4x4 transposed convolution of a 1x1 input is a linear layer whose output is already an image.
        if n_classes:  # named apart so the unconditional generator keeps its state_dict keys
            self.stem_conv = nn.ConvTranspose2d(z_dim, ch[0], 4, 1, 0)
            self.stem_bn = _norm(ch[0], norm, n_classes)
            self.FOLD = (("stem_conv", "stem_bn"),)  # the unconditional stem folds as an nn.Sequential
        else:
            self.stem = nn.Sequential(nn.ConvTranspose2d(z_dim, ch[0], 4, 1, 0),
                                      nn.BatchNorm2d(ch[0]) if norm == "batch" else nn.Identity(), nn.ReLU(True))
        self.blocks = nn.ModuleList([UpBlock(a, b, norm, n_classes) for a, b in zip(ch, ch[1:])])
        self.attn = SelfAttention(ch[3]) if attention else None  # after the block that makes 32x32
        self.to_rgb = nn.Conv2d(ch[-1], 3, 3, 1, 1)
        if norm == "none":
            stem = self.stem_conv if n_classes else self.stem[0]  # each 4x4 output of a 1x1 input sees z_dim inputs: He's rule with that fan-in
            nn.init.normal_(stem.weight, 0.0, (2.0 / z_dim) ** 0.5)
            nn.init.zeros_(stem.bias)
            _he(self.to_rgb, None)

    @classmethod
    def from_recipe(cls, r, n_classes: int = 0) -> "Generator":
        return cls(r.z_dim, r.g_width, norm=r.g_norm, attention=r.attention, n_classes=n_classes)

    @staticmethod
    def unconditional_key(key: str) -> str:
        """The unconditional generator's name for a conditional one's tensor (for adopt_weights): the
        stem is named apart, and a conditional BatchNorm's statistics and per-class affine come from
        the plain BatchNorm's statistics and affine."""
        return conditional_key(key.replace("stem_conv.", "stem.0.").replace("stem_bn.", "stem.1."))

    @classmethod
    def from_arch(cls, arch: dict) -> "Generator":
        return cls(int(arch["z_dim"]), int(arch["g_width"]), int(arch.get("g_cap", 512)), arch.get("g_norm", "batch"),
                   bool(arch.get("attention", False)), int(arch.get("n_classes", 0)))

    def arch(self) -> dict:
        extra = {**({"attention": True} if self.attention else {}),
                 **({"n_classes": self.n_classes} if self.n_classes else {})}
        return {"name": "resnet", "z_dim": self.z_dim, "g_width": self.width, "g_cap": self.cap, "g_norm": self.norm,
                **extra}

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        z = z.reshape(-1, self.z_dim, 1, 1)
        onehot = self.classes(y, z.shape[0])
        if onehot is None:
            x = self.stem(z)
        else:
            x = F.relu(apply_norm(self.stem_bn, self.stem_conv(z), onehot.to(z.dtype)))
            onehot = onehot.to(z.dtype)
        for i, block in enumerate(self.blocks):
            x = block(x, onehot)
            if i == 2 and self.attn is not None:
                x = self.attn(x)
        return torch.tanh(self.to_rgb(x))


class DownBlock(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool, first: bool, sn: bool):
        super().__init__()
        wrap = spectral_norm if sn else (lambda m: m)
        self.first, self.down = first, down
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1) if (cin != cout or down) else None
        if not sn:  # R3GAN-style: variance kept by the shortcut, residual branch starting at zero
            _he(self.conv1, None if first else 0.2)
            _zero(self.conv2)
            if self.skip is not None:
                _he(self.skip, None)
        self.conv1, self.conv2 = wrap(self.conv1), wrap(self.conv2)
        if self.skip is not None:
            self.skip = wrap(self.skip)

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


@DISCRIMINATORS.register("resnet")
class Discriminator(nn.Module):
    NORMS = ("spectral", "none")

    def __init__(self, width: int = 64, norm: str = "spectral", cap: int = 1024, sigmoid: bool = False,
                 attention: bool = False, n_classes: int = 0):
        super().__init__()
        if norm not in self.NORMS:
            refuse("resnet", "d_norm", norm)
        sn = norm == "spectral"
        wrap = spectral_norm if sn else (lambda m: m)
        ch = [min(cap, width * 2 ** i) for i in range(5)]  # 32, 16, 8, 4 and 4 px
        blocks = [DownBlock(3, ch[0], down=True, first=True, sn=sn)]
        blocks += [DownBlock(a, b, down=True, first=False, sn=sn) for a, b in zip(ch[:3], ch[1:4])]
        blocks += [DownBlock(ch[3], ch[4], down=False, first=False, sn=sn)]
        self.blocks = nn.Sequential(*blocks)
        self.attn = SelfAttention(ch[0], sn) if attention else None  # on the 32x32 features
        self.score = wrap(nn.Linear(ch[4], 1))
        self.n_classes = n_classes
        self.classes = ClassInput(n_classes)
        # Projection: the score gains <embedding(class), features>, one embedding row per class.
        self.embed = wrap(nn.Linear(n_classes, ch[4], bias=False)) if n_classes else None
        self.sigmoid = sigmoid

    @classmethod
    def from_recipe(cls, r, sigmoid: bool, n_classes: int = 0) -> "Discriminator":
        return cls(r.d_width, r.d_norm, sigmoid=sigmoid, attention=r.attention, n_classes=n_classes)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.blocks[0](x)
        if self.attn is not None:
            h = self.attn(h)
        h = F.leaky_relu(self.blocks[1:](h), 0.2).sum(dim=(2, 3))
        s = self.score(h).reshape(x.shape[0])
        onehot = self.classes(y, x.shape[0])
        if onehot is not None:
            s = s + (self.embed(onehot.to(h.dtype)) * h).sum(dim=1)
        return probability(s) if self.sigmoid else s
