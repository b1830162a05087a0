"""DCGAN generator and discriminator for 64x64 RGB images (Radford et al. 2015), optionally
conditional on a class (Mirza and Osindero 2014: the class as a one-hot vector beside z in G, and
as constant one-hot planes beside the image's channels in D). A conditional G may also take the
class in every BatchNorm (class_norm: a gain and a bias per class and channel, de Vries et al. 2017,
Miyato and Koyama 2018), which gives the class a say at every resolution, not only in the first
layer's input."""
from __future__ import annotations

import torch
from torch import nn

from networks.common import (
    DISCRIMINATORS,
    GENERATORS,
    ClassInput,
    ConditionalBatchNorm,
    apply_norm,
    conditional_key,
    init_dcgan,
    probability,
    refuse,
    spectral_norm,
)


@GENERATORS.register("dcgan")
class Generator(nn.Module):
    """z [B, z_dim] (or [B, z_dim, 1, 1]) -> image [B, 3, 64, 64] in [-1, 1].

    ConvTranspose stack 4x4 -> 8 -> 16 -> 32 -> 64 with channels 8w, 4w, 2w, w, 3,
    BatchNorm + ReLU between layers and Tanh at the end. With width=128 this is exactly the seed
    report's 100->1024->512->256->128->3 generator, biases included. A conditional one takes
    z_dim + n_classes input channels: z followed by the class's one-hot vector; with class_norm its
    BatchNorms are ConditionalBatchNorms (same place in the stack, so the state_dict keys map onto a
    plain one's by conditional_key and a fine-tune can start with every class's gain and bias at the
    trained norm's).
    """

    def __init__(self, z_dim: int = 100, width: int = 128, n_classes: int = 0, class_norm: bool = False):
        super().__init__()
        if class_norm and not n_classes:
            raise ValueError("class_norm needs a conditional generator (n_classes > 0)")
        self.z_dim, self.width, self.n_classes, self.class_norm = z_dim, width, n_classes, class_norm
        self.classes = ClassInput(n_classes)
        chans = [z_dim + n_classes, width * 8, width * 4, width * 2, width]
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(chans, chans[1:])):
            stride, pad = (1, 0) if i == 0 else (2, 1)
            norm = ConditionalBatchNorm(cout, n_classes) if class_norm else nn.BatchNorm2d(cout)
            layers += [nn.ConvTranspose2d(cin, cout, 4, stride, pad), norm, nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(width, 3, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def initialise(self) -> None:
        """The seed report's initialisation (the trainer calls it; a bare module keeps PyTorch's)."""
        self.apply(init_dcgan)

    @classmethod
    def from_recipe(cls, r, n_classes: int = 0) -> "Generator":
        if r.g_norm != "batch":
            refuse("dcgan", "g_norm", r.g_norm)  # the DCGAN generator always uses BatchNorm
        if r.attention:
            refuse("dcgan", "attention", r.attention)
        if r.g_class_norm and not r.classes:
            refuse("unconditional dcgan", "g_class_norm", r.g_class_norm)
        return cls(r.z_dim, r.g_width, n_classes, class_norm=r.g_class_norm and n_classes > 0)

    @classmethod
    def from_arch(cls, arch: dict) -> "Generator":
        return cls(z_dim=int(arch["z_dim"]), width=int(arch["g_width"]), n_classes=int(arch.get("n_classes", 0)),
                   class_norm=bool(arch.get("class_norm", False)))

    def arch(self) -> dict:
        return {"name": "dcgan", "z_dim": self.z_dim, "g_width": self.width,
                **({"n_classes": self.n_classes} if self.n_classes else {}),
                **({"class_norm": True} if self.class_norm else {})}

    unconditional_key = staticmethod(conditional_key)

    def strengthen_class(self, strength: float) -> None:
        """Multiply the class's weights in the first layer by `strength`: each class's shift of the
        first layer's features grows by that factor while z's part stays, as if the one-hot input
        were `strength` instead of 1 (the guidance scale of Ho and Salimans 2022, on the one input
        that carries the class). Above 1 it buys class accuracy with some FID; 1 changes nothing.
        Only where that input is the class's one way in: with class_norm the class is in every
        BatchNorm as well, where a scaled gain is no stronger class but a louder feature map."""
        if not self.n_classes or self.class_norm:
            raise ValueError("a class strength needs a conditional DCGAN generator whose class enters only "
                             "through the first layer (no class norms)")
        with torch.no_grad():
            self.net[0].weight[self.z_dim:].mul_(strength)  # ConvTranspose2d weight: [in, out, k, k]

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        # Reshape inside the module (with the channel count spelled out) so the exported graph takes
        # z as [batch, z_dim] and its output shape stays [batch, 3, 64, 64].
        z = z.reshape(-1, self.z_dim)
        onehot = self.classes(y, z.shape[0])
        if onehot is None:
            return self.net(z.reshape(-1, self.z_dim, 1, 1))
        onehot = onehot.to(z.dtype)
        x = torch.cat([z, onehot], dim=1).reshape(-1, self.z_dim + self.n_classes, 1, 1)
        for layer in self.net:
            x = apply_norm(layer, x, onehot)
        return x


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        # GroupNorm with one group normalises over (C, H, W) per sample: layer norm for conv
        # features, which keeps the WGAN-GP penalty per-sample as the paper requires.
        return nn.GroupNorm(1, channels)
    return nn.Identity()


@DISCRIMINATORS.register("dcgan")
class Discriminator(nn.Module):
    """image [B, 3, 64, 64] -> score [B].

    Conv 3->w->2w->4w->8w->1 (kernel 4, stride 2, pad 1; last stride 2 pad 0), LeakyReLU(0.2),
    a norm after every hidden conv but the first (as in DCGAN), Sigmoid only when the objective
    works on probabilities. norm: batch | layer | none | spectral (spectral norm on every conv).
    A conditional one sees n_classes more input channels: the class's one-hot value in every pixel.
    """

    NORMS = ("batch", "layer", "none", "spectral")

    def __init__(self, width: int = 64, norm: str = "batch", sigmoid: bool = False, n_classes: int = 0):
        super().__init__()
        if norm not in self.NORMS:
            refuse("dcgan", "d_norm", norm)
        self.n_classes = n_classes
        self.classes = ClassInput(n_classes)
        chans = [3 + n_classes, width, width * 2, width * 4, width * 8]
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(chans, chans[1:])):
            layers.append(self._conv(cin, cout, 4, 2, 1, norm))
            if i > 0:
                layers.append(_norm(norm, cout))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        layers.append(self._conv(width * 8, 1, 4, 2, 0, norm))
        self.net = nn.Sequential(*layers)
        self.sigmoid = sigmoid

    def initialise(self) -> None:
        self.apply(init_dcgan)

    @classmethod
    def from_recipe(cls, r, sigmoid: bool, n_classes: int = 0) -> "Discriminator":
        if r.attention:
            refuse("dcgan", "attention", r.attention)
        return cls(r.d_width, r.d_norm, sigmoid=sigmoid, n_classes=n_classes)

    @staticmethod
    def _conv(cin: int, cout: int, k: int, s: int, p: int, norm: str) -> nn.Module:
        conv = nn.Conv2d(cin, cout, k, s, p)
        return spectral_norm(conv) if norm == "spectral" else conv

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        onehot = self.classes(y, x.shape[0])
        if onehot is not None:
            planes = onehot.to(x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[2:])
            x = torch.cat([x, planes], dim=1)
        s = self.net(x).reshape(x.shape[0])
        return probability(s) if self.sigmoid else s
