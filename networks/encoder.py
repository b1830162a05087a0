"""An encoder for a generator: a 64x64 face -> the latent (and, for a conditional generator, the
class) that the generator draws it from. Trained on the generator's own faces (trainer/encoder/),
exported beside the model as NAME.encoder.onnx, and used by the runtime to invert a picture.

    e = Encoder(z_dim=100, n_classes=0)
    z, logits = e(images)          # images [B, 3, 64, 64] in [-1, 1] -> z [B, 100], logits [B, 0]

Four stride-2 convolutions with LeakyReLU (64 -> 4 px), then two linear layers: about 1.8 M
parameters at width 32 (7 MB as a float32 file), a few milliseconds a face on a CPU.
"""
from __future__ import annotations

import torch
from torch import nn


class Encoder(nn.Module):
    def __init__(self, z_dim: int = 100, n_classes: int = 0, width: int = 32, hidden: int = 256):
        super().__init__()
        self.z_dim, self.n_classes, self.width, self.hidden = z_dim, n_classes, width, hidden
        chans = [3, width, width * 2, width * 4, width * 8]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans, chans[1:]):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * 8 * 16, hidden), nn.LeakyReLU(0.2))
        self.to_z = nn.Linear(hidden, z_dim)
        self.to_class = nn.Linear(hidden, max(1, n_classes))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z [B, z_dim], class logits [B, n_classes]; [B, 0] for an unconditional generator)."""
        h = self.features(x)
        logits = self.to_class(h)
        return self.to_z(h), logits[:, :self.n_classes]

    def arch(self) -> dict:
        return {"name": "encoder", "z_dim": self.z_dim, "n_classes": self.n_classes, "width": self.width,
                "hidden": self.hidden}

    @classmethod
    def from_arch(cls, arch: dict) -> "Encoder":
        return cls(int(arch["z_dim"]), int(arch.get("n_classes", 0)), int(arch.get("width", 32)),
                   int(arch.get("hidden", 256)))
