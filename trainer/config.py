"""Every recipe in one place: architecture, loss and optimiser as named, documented settings.

A recipe is a plain dataclass so that any field can be overridden from the command line
(`--lr`, `--g-width`, ...) and written verbatim into `generator.json` / `checkpoint.pt`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class Recipe:
    name: str
    description: str = ""
    source: str = ""
    # Architecture (see trainer/models.py).
    z_dim: int = 100
    g_width: int = 128          # G channels are 8w, 4w, 2w, w; w=128 gives the seed's 1024-512-256-128
    d_width: int = 64           # D channels are w, 2w, 4w, 8w
    d_norm: str = "batch"       # batch | layer | none | spectral
    d_sigmoid: bool = False
    # Loss and optimiser.
    loss: str = "seed-bce"      # seed-bce | bce | wgan | wgan-gp | hinge
    optimizer: str = "adam"     # adam | rmsprop
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    batch_size: int = 128
    epochs: int = 100
    n_critic: int = 1           # D steps (each on a fresh real batch) per G step
    clip: float = 0.0           # WGAN weight clipping; 0 = off
    gp_lambda: float = 0.0      # WGAN-GP gradient penalty weight; 0 = off
    real_label: tuple[float, float] = (1.0, 1.0)   # BCE target for real images, drawn U(a, b) once per batch
    fake_label: tuple[float, float] = (0.0, 0.0)
    ema_decay: float = 0.0      # EMA of G's weights; 0 = off
    diffaug: str = ""           # comma list of color,translation,cutout; "" = off
    flip: bool = True           # random horizontal flips of real images

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
        return cls(**d)


RECIPES: dict[str, Recipe] = {
    "seed-dcgan": Recipe(
        name="seed-dcgan",
        description="The seed report's DCGAN exactly: BCE with noisy labels (real U(0.7,1.12), "
                    "fake U(0,0.3)), Adam lr 0.002, non-saturating G loss -log(D(G(z))+1e-6).",
        source="Seed report; architecture from Radford et al. 2015 (DCGAN), arXiv:1511.06434",
        lr_g=2e-3, lr_d=2e-3, d_sigmoid=True, loss="seed-bce",
        real_label=(0.7, 1.12), fake_label=(0.0, 0.3), flip=False,
    ),
    "wgan": Recipe(
        name="wgan",
        description="Wasserstein GAN: critic without Sigmoid, weights clipped to +-0.01, "
                    "RMSprop lr 5e-5, 5 critic steps per G step.",
        source="Arjovsky et al. 2017, arXiv:1701.07875",
        loss="wgan", optimizer="rmsprop", lr_g=5e-5, lr_d=5e-5, n_critic=5, clip=0.01, batch_size=64,
    ),
    "wgan-gp": Recipe(
        name="wgan-gp",
        description="WGAN with gradient penalty (lambda 10) on random interpolates; critic with "
                    "layer norm instead of BatchNorm; Adam lr 1e-4 betas (0, 0.9); 5 critic steps.",
        source="Gulrajani et al. 2017, arXiv:1704.00028",
        loss="wgan-gp", d_norm="layer", lr_g=1e-4, lr_d=1e-4, beta1=0.0, beta2=0.9,
        n_critic=5, gp_lambda=10.0, batch_size=64,
    ),
    "best": Recipe(
        name="best",
        description="The shipped model's recipe: DCGAN generator (BatchNorm) with a spectrally "
                    "normalised hinge-loss discriminator, two-time-scale Adam (D 4e-4, G 1e-4, "
                    "betas (0, 0.9)) and an EMA of G's weights (decay 0.999).",
        source="Miyato et al. 2018 (spectral norm, hinge), Heusel et al. 2017 (TTUR), "
               "Yazici et al. 2019 (EMA); DiffAugment (Zhao et al. 2020) is available via --diffaug",
        d_norm="spectral", loss="hinge", lr_g=1e-4, lr_d=4e-4, beta1=0.0, beta2=0.9,
        ema_decay=0.999, batch_size=128,
    ),
}


def get_recipe(name: str, **overrides) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(RECIPES[name], **overrides)
