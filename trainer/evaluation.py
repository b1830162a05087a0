"""Measuring a generator during a run: FID-5k (with KID, precision, recall and near-duplicates of the
same faces, and a conditional generator's class accuracy) on the evaluation's own protocol.

    result = measure(g, "data/anime-faces-64.zip", device="cpu")   # {"fid": ..., "kid": ..., "protocol": ...}

The metrics themselves are metrics/report.py's; this is the trainer's one way to call them.
"""
from __future__ import annotations

from pathlib import Path

from torch import nn


def measure(g: nn.Module, data: str | Path, n: int = 5000, ref_n: int | None = None, device: str = "cpu",
            classes: list[str] | None = None, weights: list[float] | None = None) -> dict:
    """The in-run evaluation of a torch generator (eval mode) against the data's cached reference."""
    from metrics.samplers import torch_sampler
    from metrics.report import training_metrics

    return training_metrics(torch_sampler(g, device), g.z_dim, data, n, ref_n, str(device), classes, weights)
