"""What a run folder holds besides checkpoints: the loss log and plot, sample grids, the card."""
from __future__ import annotations

import csv
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.errors import UserError
from core.files import atomic_write
from core.images import make_grid, save_png, to_uint8
from core.system import cpu_name

LOSS_FIELDS = ["step", "epoch", "loss_d", "loss_g", "d_real", "d_fake", "images_per_s"]


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def check_writable(out: Path, need_bytes: int) -> None:
    """Fail at start, not after an hour, when the run folder cannot take the files."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        # A unique probe name: under torchrun every process checks the same folder at once.
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"cannot write to output folder {out}: {exc.strerror or exc}") from None
    free = shutil.disk_usage(out).free
    if free < need_bytes:
        raise UserError(f"not enough free disk space in {out}: {free / 1e6:.0f} MB free, "
                        f"checkpoints need about {need_bytes / 1e6:.0f} MB")


class LossLog:
    """losses.csv, one row every --log-every steps; a resumed run drops rows logged after its
    checkpoint (a kill -9 may leave some)."""

    def __init__(self, path: Path, up_to_step: int):
        self.path = path
        rows = []
        if path.exists():
            with open(path, newline="") as f:
                rows = [row for row in csv.DictReader(f) if int(row["step"]) <= up_to_step]
        self.history = [{k: float(v) for k, v in row.items()} for row in rows]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=LOSS_FIELDS)
            w.writeheader()
            w.writerows(rows)

    def append(self, row: dict) -> None:
        self.history.append(row)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=LOSS_FIELDS).writerow(row)

    def plot(self, path: Path, title: str) -> None:
        if not self.history:
            return
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = [h["step"] for h in self.history]
        fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
        ax.plot(steps, [h["loss_d"] for h in self.history], label="D loss", lw=0.8)
        ax.plot(steps, [h["loss_g"] for h in self.history], label="G loss", lw=0.8)
        ax.set_xlabel("generator step")
        ax.set_ylabel("loss")
        ax.set_title(f"{title}: losses")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
        plt.close(fig)


@torch.no_grad()
def save_samples(g: nn.Module, z: torch.Tensor, path: Path) -> None:
    """An 8-column grid of G's faces for fixed latents (the same faces every time)."""
    from PIL import Image

    was_training = g.training
    g.eval()
    imgs = to_uint8(g(z).float().cpu().numpy())
    g.train(was_training)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(Image.fromarray(make_grid(imgs, cols=8)), path)


def parameter_count(module: nn.Module) -> int:
    return int(sum(np.prod(p.shape) for p in module.parameters()))
