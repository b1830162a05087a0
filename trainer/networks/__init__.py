"""Networks as plug-ins: each architecture registers its generator and discriminator here.

A generator module has `z_dim`, maps z [B, z_dim] to images [B, 3, 64, 64] in [-1, 1], describes
itself with `arch()` (the `arch` block of generator.json) and is rebuilt by `from_arch(arch)`.
Export, metrics, the runtime and the app need nothing more, so a new architecture is one module
and one line below.
"""
from __future__ import annotations

from torch import nn

from core.errors import UserError
from trainer.networks import dcgan, resnet
from trainer.networks.common import fold_batchnorm, recalibrate_batchnorm  # noqa: F401  (re-exported)

GENERATORS = {"dcgan": dcgan.Generator, "resnet": resnet.Generator}
DISCRIMINATORS = {"dcgan": dcgan.Discriminator, "resnet": resnet.Discriminator}


def build_generator(arch: dict) -> nn.Module:
    """G from the `arch` block of generator.json (older files have no name: they are DCGANs)."""
    name = arch.get("name", "dcgan")
    if name not in GENERATORS:
        raise UserError(f"unknown generator architecture {name!r}; known: {', '.join(GENERATORS)}")
    return GENERATORS[name].from_arch(arch)


def generator_for(recipe) -> nn.Module:
    if recipe.g_arch == "resnet":
        return resnet.Generator(recipe.z_dim, recipe.g_width, norm=recipe.g_norm)
    if recipe.g_arch == "dcgan":
        if recipe.g_norm != "batch":
            raise UserError("the dcgan generator always uses BatchNorm (g_norm batch)")
        return dcgan.Generator(recipe.z_dim, recipe.g_width)
    raise UserError(f"unknown generator architecture {recipe.g_arch!r}; known: {', '.join(GENERATORS)}")


def discriminator_for(recipe, sigmoid: bool) -> nn.Module:
    if recipe.d_arch not in DISCRIMINATORS:
        raise UserError(f"unknown discriminator architecture {recipe.d_arch!r}; known: {', '.join(DISCRIMINATORS)}")
    cls = DISCRIMINATORS[recipe.d_arch]
    if recipe.d_norm not in cls.NORMS:
        raise UserError(f"the {recipe.d_arch} discriminator takes d_norm {' | '.join(cls.NORMS)}, not {recipe.d_norm!r}")
    return cls(recipe.d_width, recipe.d_norm, sigmoid=sigmoid)
