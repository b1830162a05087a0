"""Seeds -> latents, and pixels -> pictures: the runtime's own functions, so that seed 42 is the
same face in the trainer's samples, the exporter's parity check, the CLI and the app."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from demo.engine import latents, make_grid, to_uint8  # noqa: F401  (re-exported; numpy/pillow only)

LATENT_RULE = "numpy RandomState(seed).randn(z_dim) as float32"


def latents_for_seeds(seeds: Iterable[int], z_dim: int) -> np.ndarray:
    """[len(seeds), z_dim] float32; seed s always gives the same z on every machine."""
    return latents(list(seeds), z_dim)
