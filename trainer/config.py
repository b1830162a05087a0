"""What a run trains and how it runs, in two typed dataclasses: Recipe (networks, objective,
optimiser, averaging, augmentation, schedules; every named recipe is here) and RunOptions (limits,
timing, evaluations, speed settings, where it started from).

Both are plain dataclasses: any field can be set from the command line (`--lr`, `--g-width`,
`--kimg`, ...; trainer/options.py) and both are written verbatim into `checkpoint.pt`, the recipe
into `generator.json` too. The loss's own hyperparameters live in `loss_params` (each objective
declares them in trainer/objectives.py).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from core.errors import UserError
from core.system import process_start
from trainer.ema import half_life_kimg_of_decay

# Fields of recipes written before objectives owned their hyperparameters: they move into loss_params.
_OLD_LOSS_FIELDS = ("real_label", "fake_label", "clip", "gp_lambda", "r1_gamma", "r2_gamma", "reg_every")


@dataclass
class Recipe:
    name: str
    description: str = ""
    source: str = ""
    # Networks (networks/: the registered architectures).
    g_arch: str = "dcgan"       # a registered generator: dcgan | resnet
    d_arch: str = "dcgan"       # a registered discriminator: dcgan | resnet
    z_dim: int = 100
    g_width: int = 128          # dcgan: G channels 8w, 4w, 2w, w (w=128 is the seed's 1024-512-256-128); resnet: channels at 64 px
    g_norm: str = "batch"       # batch | none (resnet only)
    g_class_norm: bool = False  # dcgan, conditional: the class in every BatchNorm too (resnet's conditional G always has it)
    d_width: int = 64           # dcgan: D channels w, 2w, 4w, 8w; resnet: channels at 32 px, doubling
    d_norm: str = "batch"       # dcgan: batch | layer | none | spectral; resnet: spectral | none
    attention: bool = False     # resnet: SAGAN self-attention at 32x32 in G and D
    # Classes (conditional GANs): a class set from core/attributes.py ("" = unconditional).
    classes: str = ""
    mismatch: float = 0.0       # share of D's fake-side pairs that are real images with a wrong class (0.5: the seed report's three pairs)
    # Objective (trainer/objectives.py) and its own hyperparameters.
    loss: str = "seed-bce"      # seed-bce | wgan | wgan-gp | hinge | rpgan
    loss_params: dict = field(default_factory=dict)
    # Optimiser.
    optimizer: str = "adam"     # adam | rmsprop
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    batch_size: int = 128
    epochs: int = 100
    n_critic: int = 1           # D steps (each on a fresh real batch) per G step
    # Averaging and augmentation.
    ema_kimg: float = 0.0       # half-life of the EMA of G's weights in thousands of images; 0 = off
    ema_rampup: float = 0.05    # half-life at most this times the images seen (StyleGAN2's ramp)
    diffaug: str = ""           # comma list of color,translation,cutout; "" = off
    flip: bool = True           # random horizontal flips of real images
    # Fine-tuning: thousands of real images D trains alone at the start (G and its EMA frozen), so a D
    # that starts from zero under a trained G judges something before G follows its gradients.
    d_warmup_kimg: float = 0.0
    # Fine-tuning: "all" of G learns, or only what the fine-tune "added" (the class inputs): G's own
    # weights stay as trained, so its faces cannot be worn down by a D that starts from zero.
    g_train: str = "all"
    # Schedules: {"kimg": K, "lr_g": [start, end], "beta2": [...], "<loss parameter>": [...]}, cosine over K
    # thousand images, then held at the end value; {} = constant.
    schedule: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        d = dict(d)
        if "ema_decay" in d and "ema_kimg" not in d:  # files from before half-lives: the same averaging speed
            d["ema_kimg"] = half_life_kimg_of_decay(float(d["ema_decay"]), int(d.get("batch_size", 128)))
        if "loss_params" not in d:  # files from before objectives owned their hyperparameters
            from trainer.objectives import OBJECTIVES

            params = OBJECTIVES[d.get("loss", "seed-bce")].Params
            mine = {f.name for f in dataclasses.fields(params)}
            d["loss_params"] = {k: d[k] for k in _OLD_LOSS_FIELDS if k in d and k in mine}
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
        return cls(**d)


RECIPES: dict[str, Recipe] = {
    "seed-dcgan": Recipe(
        name="seed-dcgan",
        description="The seed report's DCGAN exactly: BCE with noisy labels (real U(0.7,1.12), "
                    "fake U(0,0.3)), Adam lr 0.002, non-saturating G loss -log(D(G(z))+1e-6).",
        source="Seed report; architecture from Radford et al. 2015 (DCGAN), arXiv:1511.06434",
        lr_g=2e-3, lr_d=2e-3, loss="seed-bce", loss_params={"real_label": (0.7, 1.12), "fake_label": (0.0, 0.3)},
        flip=False,
    ),
    "wgan": Recipe(
        name="wgan",
        description="Wasserstein GAN: critic without Sigmoid, weights clipped to +-0.01, "
                    "RMSprop lr 5e-5, 5 critic steps per G step.",
        source="Arjovsky et al. 2017, arXiv:1701.07875",
        loss="wgan", loss_params={"clip": 0.01}, optimizer="rmsprop", lr_g=5e-5, lr_d=5e-5, n_critic=5, batch_size=64,
    ),
    "wgan-gp": Recipe(
        name="wgan-gp",
        description="WGAN with gradient penalty (lambda 10) on random interpolates; critic with "
                    "layer norm instead of BatchNorm; Adam lr 1e-4 betas (0, 0.9); 5 critic steps.",
        source="Gulrajani et al. 2017, arXiv:1704.00028",
        loss="wgan-gp", loss_params={"gp_lambda": 10.0}, d_norm="layer", lr_g=1e-4, lr_d=1e-4, beta1=0.0,
        beta2=0.9, n_critic=5, batch_size=64,
    ),
    "best": Recipe(
        name="best",
        description="DCGAN generator (BatchNorm) with a spectrally normalised hinge-loss "
                    "discriminator, two-time-scale Adam (D 4e-4, G 1e-4, betas (0, 0.9)) and an EMA "
                    "of G's weights (half-life 88.7k images: decay 0.999 per step at batch 128).",
        source="Miyato et al. 2018 (spectral norm, hinge), Heusel et al. 2017 (TTUR), "
               "Yazici et al. 2019 (EMA); DiffAugment (Zhao et al. 2020) is available via --diffaug",
        d_norm="spectral", loss="hinge", lr_g=1e-4, lr_d=4e-4, beta1=0.0, beta2=0.9,
        ema_kimg=88.7, batch_size=128,
    ),
    "sngan": Recipe(
        name="sngan",
        description="For long runs on a GPU: SNGAN-style ResNet G (BatchNorm, 3.6 M parameters) and "
                    "spectral-norm ResNet D (width 32, 4.9 M), hinge loss, one D step per G step, two "
                    "time-scale Adam (G 1e-4, D 4e-4, betas (0, 0.9)), batch 256, DiffAugment "
                    "(translation, cutout), flips, EMA half-life 100k images with the ramp.",
        source="Miyato et al. 2018 (SNGAN, 64x64 ResNets); Heusel et al. 2017 (TTUR); Zhao et al. 2020 "
               "(DiffAugment's translation+cutout policy, as in its BigGAN runs); Karras et al. 2020 (EMA)",
        g_arch="resnet", d_arch="resnet", z_dim=128, g_width=32, d_width=32, d_norm="spectral",
        loss="hinge", lr_g=1e-4, lr_d=4e-4, beta1=0.0, beta2=0.9, n_critic=1, batch_size=256,
        ema_kimg=100.0, diffaug="translation,cutout",
    ),
    "resnet": Recipe(
        name="resnet",
        description="SNGAN-style ResNet G (3.6 M parameters, widths 512-256-128-64-32) and ResNet D "
                    "with spectral norm, hinge loss, 2 D steps per G step, Adam 2e-4 betas (0, 0.9), "
                    "batch 256, DiffAugment (color, translation, cutout), EMA half-life 10k images.",
        source="Miyato et al. 2018 (SNGAN ResNets at 64x64, as in the Mimicry benchmark); "
               "Zhao et al. 2020 (DiffAugment); Karras et al. 2020 (EMA half-life and ramp)",
        g_arch="resnet", d_arch="resnet", z_dim=128, g_width=32, d_width=64, d_norm="spectral",
        loss="hinge", lr_g=2e-4, lr_d=2e-4, beta1=0.0, beta2=0.9, n_critic=2, batch_size=256,
        ema_kimg=10.0, diffaug="color,translation,cutout",
    ),
    "r3": Recipe(
        name="r3",
        description="R3GAN-like: ResNet G and D without normalisation layers and with a "
                    "variance-preserving initialisation, relativistic pairing loss with R1 and R2 "
                    "every step, and R3GAN's FFHQ-64 schedules over 20M images (gamma 2 -> 0.2, "
                    "lr 2e-4 -> 5e-5, beta2 0.9 -> 0.99, cosine), batch 256, EMA half-life 500k images "
                    "with the ramp.",
        source="Huang et al. 2024 (R3GAN: RpGAN + R1 + R2, no normalisation, its FFHQ-64 preset); "
               "Jolicoeur-Martineau 2018 (relativistic GANs)",
        g_arch="resnet", d_arch="resnet", z_dim=128, g_width=32, g_norm="none", d_width=64, d_norm="none",
        loss="rpgan", loss_params={"r1_gamma": 2.0, "r2_gamma": 2.0, "reg_every": 1}, lr_g=2e-4, lr_d=2e-4,
        beta1=0.0, beta2=0.9, batch_size=256, ema_kimg=500.0,
        schedule={"kimg": 20000, "lr_g": (2e-4, 5e-5), "lr_d": (2e-4, 5e-5), "beta2": (0.9, 0.99),
                  "r1_gamma": (2.0, 0.2), "r2_gamma": (2.0, 0.2)},
    ),
    "cgan": Recipe(
        name="cgan",
        description="The seed report's conditional GAN: DCGAN networks with the hair-colour class as a "
                    "one-hot vector beside z in G and as one-hot planes beside the image in D; D learns "
                    "three pairs (real image + its class: real; generated image + its class: fake; real "
                    "image + a wrong class: fake), BCE, Adam 2e-4 betas (0.5, 0.999), batch 128.",
        source="Seed report, section 3.2; Mirza and Osindero 2014 (CGAN); Reed et al. 2016 (the "
               "matching-aware three-pair loss); DCGAN's optimiser settings (Radford et al. 2015)",
        classes="hair", mismatch=0.5, loss="seed-bce", lr_g=2e-4, lr_d=2e-4,
    ),
    "cgan-best": Recipe(
        name="cgan-best",
        description="The conditional GAN with the `best` recipe's training: the same class inputs and "
                    "three pairs, a spectral-norm hinge-loss D, two time-scale Adam (D 4e-4, G 1e-4, "
                    "betas (0, 0.9)) and an EMA of G's weights.",
        source="Seed report section 3.2 and Reed et al. 2016 (three pairs); Miyato et al. 2018; "
               "Heusel et al. 2017; Yazici et al. 2019",
        classes="hair", mismatch=0.5, d_norm="spectral", loss="hinge", lr_g=1e-4, lr_d=4e-4, beta1=0.0,
        beta2=0.9, ema_kimg=88.7, batch_size=128,
    ),
    "cgan-transfer": Recipe(
        name="cgan-transfer",
        description="The conditional GAN fine-tuned from a trained unconditional generator (--finetune its "
                    "Generator.pth): cgan-best's class inputs, three pairs and spectral-norm hinge D; the class "
                    "enters G with weight zero (at step 0 G is the source for every class) and only those class "
                    "weights learn (G's own weights stay as trained; Adam 2e-3), D starts from zero (Adam 4e-4, "
                    "betas (0, 0.9)) and trains alone for its first 19.2k images (150 steps), EMA half-life 5k "
                    "images without the ramp (only the class weights move, so a longer one only delays them).",
        source="Seed report section 3.2 and Reed et al. 2016 (three pairs); Wang et al. 2018 (Transferring GANs); "
               "Mo et al. 2020 (freezing parts of a pretrained GAN); Miyato et al. 2018; Karras et al. 2020",
        classes="hair", mismatch=0.5, d_norm="spectral", loss="hinge", lr_g=2e-3, lr_d=4e-4, beta1=0.0,
        beta2=0.9, ema_kimg=5.0, ema_rampup=0.0, d_warmup_kimg=19.2, g_train="added", batch_size=128,
    ),
    "cgan-transfer-cbn": Recipe(
        name="cgan-transfer-cbn",
        description="cgan-transfer with the class in every BatchNorm of G too (a gain and a bias per class and "
                    "channel, starting at the trained norm's, so at step 0 G is its source for every class): the class "
                    "acts at every resolution, where cgan-transfer's one offset in the first layer plateaus. Meant to "
                    "continue a cgan-transfer run (--finetune its folder: G, D and EMA; the trained D needs no warm-up); "
                    "only the new per-class norms learn, at Adam 1e-3 (half cgan-transfer's: they scale whole layers).",
        source="de Vries et al. 2017 (conditional BatchNorm); Miyato and Koyama 2018; the cgan-transfer sources",
        classes="hair", mismatch=0.5, d_norm="spectral", loss="hinge", lr_g=1e-3, lr_d=4e-4, beta1=0.0,
        beta2=0.9, ema_kimg=5.0, ema_rampup=0.0, d_warmup_kimg=19.2, g_train="added", batch_size=128,
        g_class_norm=True,
    ),
}


def get_recipe(name: str, **overrides) -> Recipe:
    if name not in RECIPES:
        raise UserError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(RECIPES[name], **overrides)


_NOT_SETTINGS = ("name", "description", "source")


def recipe_changes(recipe: dict) -> dict[str, tuple]:
    """{setting: (the named recipe's value, this run's)} for each setting a run changed from the recipe
    it is named after (`--lr 2e-4` on seed-dcgan: lr_g and lr_d); {} for a name not in RECIPES.
    A loss parameter appears as "loss_params.NAME"."""
    base = RECIPES.get(str(recipe.get("name", "")))
    if base is None:
        return {}
    mine, theirs = Recipe.from_dict(recipe).to_dict(), base.to_dict()
    for d in (mine, theirs):
        d.update({f"loss_params.{k}": tuple(v) if isinstance(v, list) else v for k, v in d.pop("loss_params").items()})
    return {k: (theirs.get(k), v) for k, v in mine.items() if k not in _NOT_SETTINGS and not _same(theirs.get(k), v)}


def _same(a: object, b: object) -> bool:
    # Files from before EMA half-lives hold a converted half-life (88.678 for 88.7): not a change.
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-3)
    return a == b


def describe(recipe: dict) -> str:
    """A recipe's description, followed by what the run changed from it (networks.files.recipe_text)."""
    from networks.files import recipe_text

    return recipe_text({"recipe": recipe, "recipe_changes": recipe_changes(recipe)})


@dataclass
class RunOptions:
    """How one run trains, beside what it trains (its Recipe). A --resume keeps the SAVED ones
    unless the command line gives them again; the others belong to the process that runs."""
    seed: int = 0                     # init, shuffling, noise
    device: str = "auto"              # auto | cpu | cuda
    max_steps: int | None = None      # generator steps in total
    max_minutes: float | None = None  # training time in total, over all resumes
    kimg: float | None = None         # thousands of real images shown to D in total
    time_limit: float | None = None   # minutes of wall-clock time from this process's start, saving included
    checkpoint_minutes: float = 10.0  # checkpoint, Generator.pth, samples and plots this often
    log_every: int = 10               # read losses back every N generator steps
    eval_every: int = 0               # evaluate every N epochs (0: off)
    eval_every_kimg: float = 0.0      # evaluate every N thousand real images (0: off)
    eval_n: int = 5000                # generated faces per evaluation
    eval_ref_n: int | None = None     # reference images (None: the evaluation's default for the data)
    precision: str = "auto"           # auto | bf16 | fp32 (trainer/precision.py)
    channels_last: bool = False       # CUDA: channels_last memory format
    compile: bool = False             # torch.compile G and D (eager when it fails)
    no_tf32: bool = False             # CUDA: no TF32 matmuls and convolutions
    early_checks: bool = False        # roll back and halve the learning rates when a run goes wrong (trainer/checks.py)
    proxy: str | None = None          # metrics/proxy.py file for the early checks (near-duplicates, FID proxy)
    finetune: str | None = None       # the source a fine-tune started from (recorded in its run card)
    no_start_eval: bool = False       # a fine-tune with evaluations: skip measuring its starting point
    quiet: bool = False               # no progress bars
    started_at: float = field(default_factory=process_start)  # when the time limit started counting (Unix s)

    SAVED = ("max_steps", "max_minutes", "kimg", "checkpoint_minutes", "log_every", "eval_every", "eval_every_kimg",
             "eval_n", "eval_ref_n", "precision", "channels_last", "compile", "no_tf32", "early_checks", "proxy",
             "finetune")

    def saved(self) -> dict:
        """What checkpoint.pt keeps for a --resume."""
        return {k: getattr(self, k) for k in self.SAVED}

    @staticmethod
    def from_saved(saved: dict) -> dict:
        """A checkpoint's options as RunOptions fields (files from before `precision` said `bf16`)."""
        saved = dict(saved or {})
        if "precision" not in saved and "bf16" in saved:
            saved["precision"] = "bf16" if saved["bf16"] else "fp32"
        return {k: v for k, v in saved.items() if k in RunOptions.SAVED and v is not None}

    def deadline(self) -> float | None:
        """The wall-clock time (time.time()) by which this process must have stopped, or None."""
        return self.started_at + 60 * self.time_limit if self.time_limit else None

