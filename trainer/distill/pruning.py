"""A narrower copy of a trained DCGAN generator that keeps its most active channels (trainer.distill's start).

Network slimming's idea (Liu et al. 2017), the start GAN compression works from (Li et al. 2020):
each layer keeps the part of the teacher's channels that are most active over fixed probe latents,
with their weights, biases and norms, so the student starts near the teacher rather than from noise.
Because every kept channel is one of the teacher's, the kept indices let a distillation match the
student's features to the teacher's layer by layer, not only the pixels.
"""
from __future__ import annotations

import torch
from torch import nn

from core.errors import UserError
from core.seeds import latents, seed_range
from networks import build_generator


def pruned_student(teacher: nn.Module, width: int, probe_n: int) -> tuple[nn.Module, list[torch.Tensor]]:
    """A DCGAN G of `width` whose every layer keeps the teacher's most active channels (mean
    activation after ReLU over probe latents), with their weights; and the kept indices per ReLU."""
    arch = teacher.arch()
    if arch.get("name") != "dcgan" or arch.get("class_norm") or width >= arch["g_width"]:
        raise UserError(f"distillation prunes a DCGAN generator without class norms to a smaller width: teacher "
                        f"is {arch}, student width {width}")
    student = build_generator({**arch, "g_width": width})
    z = torch.from_numpy(latents(seed_range("distillation", probe_n), arch["z_dim"]))
    y = torch.arange(probe_n) % teacher.n_classes if teacher.n_classes else None  # every class equally
    kept = []
    with torch.no_grad():
        for feature in features(teacher, z, y)[:-1]:  # every hidden layer; the image keeps its 3 channels
            k = feature.shape[1] * width // arch["g_width"]
            kept.append(torch.sort(torch.topk(feature.mean((0, 2, 3)), k).indices).values)
    layers = [(t, s) for t, s in zip(teacher.net, student.net) if isinstance(t, (nn.ConvTranspose2d, nn.BatchNorm2d))]
    into, out = torch.arange(arch["z_dim"] + teacher.n_classes), iter([*kept, torch.arange(3)])  # z and the class inputs
    with torch.no_grad():
        for t, s in layers:
            if isinstance(t, nn.ConvTranspose2d):
                rows = next(out)
                # The kept weights as they are: a BatchNorm after each hidden layer normalises away the
                # scale the dropped inputs took with them, and the image layer came out closer to the
                # teacher unscaled than with the kept weights doubled (a one-off check on the default).
                s.weight.copy_(t.weight[into][:, rows])
                s.bias.copy_(t.bias[rows])
                into = rows
            else:
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(s, name).copy_(getattr(t, name)[into])
    return student, kept


def features(g: nn.Module, z: torch.Tensor, y: torch.Tensor | None) -> list[torch.Tensor]:
    """Each ReLU's output, then the image, of a DCGAN G's layer stack (a conditional one's input is
    z and the class's one-hot vector, as its forward builds it)."""
    onehot = g.classes(y, len(z))
    x = (z if onehot is None else torch.cat([z, onehot.to(z.dtype)], 1)).reshape(len(z), -1, 1, 1)
    out = []
    for layer in g.net:
        x = layer(x)
        if isinstance(layer, nn.ReLU):
            out.append(x)
    return out + [x]
