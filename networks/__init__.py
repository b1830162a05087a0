"""The generators and discriminators, as plug-ins: every architecture module in this folder registers
its pair; files.py reads and writes the torch files (Generator.pth, checkpoints). The trainer, the
export and the evaluation all build networks from here.

A generator has `z_dim` and `n_classes` (0: unconditional), maps z [B, z_dim] (and, when
conditional, class indices [B]) to images [B, 3, 64, 64] in [-1, 1], describes itself with `arch()`
(the `arch` block of generator.json, which names it) and is rebuilt by `from_arch(arch)`; both
networks are made from a recipe by `from_recipe`. Export, metrics, the runtime and the app need
nothing more, so a new architecture is one new module in this folder: it is found and registered
when this package is imported, and every list of choices (trainer flags, bench options) follows.
(`common` holds what they share, `files` the file formats and `encoder` the inversion encoder;
none of them is a generator or discriminator plug-in.)
"""
from __future__ import annotations

import importlib
import pkgutil

from torch import nn

from networks.common import (  # noqa: F401  (re-exported)
    DISCRIMINATORS,
    GENERATORS,
    adopt_weights,
    calibration_batch,
    fold_batchnorm,
    recalibrate_batchnorm,
)

NOT_ARCHITECTURES = ("common", "files", "encoder")  # shared pieces, file formats, the inversion encoder
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in NOT_ARCHITECTURES:
        importlib.import_module(f"{__name__}.{_module.name}")


def build_generator(arch: dict) -> nn.Module:
    """G from the `arch` block of generator.json (older files have no name: they are DCGANs)."""
    return GENERATORS[arch.get("name", "dcgan")].from_arch(arch)


def generator_for(recipe, n_classes: int = 0) -> nn.Module:
    return GENERATORS[recipe.g_arch].from_recipe(recipe, n_classes)


def discriminator_for(recipe, sigmoid: bool, n_classes: int = 0) -> nn.Module:
    return DISCRIMINATORS[recipe.d_arch].from_recipe(recipe, sigmoid, n_classes)
