"""Set-up: everything a run holds (device, data on the device, networks, objective, optimisers,
EMA, counters), built from a Recipe and RunOptions, saved into checkpoint.pt and restored from it.

    run = RunState(recipe, options, images, data_info, labels, class_names)
    run.load_state_dict(load_torch("runs/best/checkpoint.pt"))   # a continued run

The whole data set lives on the device as uint8 (282 MB for 23k faces), with its class labels when
the recipe is conditional: batches are cut on the device, so no loader and no copies.
"""
from __future__ import annotations

import copy
import logging
import math
import os

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from core.errors import UserError
from core.seeds import latents, seed_range
from networks import calibration_batch, discriminator_for, generator_for, recalibrate_batchnorm
from trainer.config import Recipe, RunOptions
from trainer.diffaug import parse_policy
from trainer.ema import EMA
from trainer.objectives import objective_for

log = logging.getLogger("trainer")
SAMPLE_SEEDS = seed_range("faces", 64)  # fixed seeds for the sample grids, so they compare face by face
STATS = ("loss_d", "loss_g", "d_real", "d_fake", "d_acc")


class TrainingError(UserError):
    """A run that cannot start or must stop; the message is shown as one line."""


def pick_device(want: str) -> torch.device:
    if want == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for, but CUDA is not available here")
    if want == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def sample_classes(n: int, n_classes: int) -> np.ndarray | None:
    """The classes of the sample grids' seeds: every class in turn (seed i gets class i % n)."""
    return np.arange(n) % n_classes if n_classes else None


class RunState:
    def __init__(self, recipe: Recipe, options: RunOptions, images: np.ndarray, data_info: dict,
                 labels: np.ndarray | None = None, class_names: list[str] | None = None):
        self.recipe, self.options, self.data_info = recipe, options, data_info
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        self.is_main = self.rank == 0
        self.device = pick_device(options.device)
        if recipe.batch_size % self.world:
            raise TrainingError(f"batch size {recipe.batch_size} is not divisible by {self.world} processes")
        self.local_batch = recipe.batch_size // self.world
        if recipe.diffaug:
            parse_policy(recipe.diffaug)
        cuda = self.device.type == "cuda"
        self.channels_last = cuda and options.channels_last
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = not options.no_tf32
            torch.backends.cudnn.allow_tf32 = not options.no_tf32
            torch.backends.cudnn.benchmark = True

        self.class_names = list(class_names or [])
        self.n_classes = len(self.class_names)
        self.class_counts = (np.bincount(labels, minlength=self.n_classes).tolist()
                             if self.n_classes and labels is not None else [])
        torch.manual_seed(options.seed)
        np.random.seed(options.seed)
        self.objective = objective_for(recipe)
        self.g = generator_for(recipe, self.n_classes)
        self.d = discriminator_for(recipe, self.objective.probabilities, self.n_classes)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        for net in (self.g, self.d):
            getattr(net, "initialise", lambda: None)()
            net.to(self.device, memory_format=fmt)
        from trainer.precision import choose

        self.bf16, self.precision_note = choose(options.precision, self.device, self.g, self.d, self.local_batch,
                                                self.n_classes)
        # Real and generated images go through D in one forward unless D normalises over the batch
        # (the report's BatchNorm D must see them apart, as in the report).
        self.d_batchwise = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in self.d.modules())
        self.ema = EMA(self.g, recipe.ema_kimg, recipe.ema_rampup) if recipe.ema_kimg > 0 else None
        # The networks as the steps call them: DistributedDataParallel-wrapped under torchrun.
        self.g_wrapped, self.d_wrapped = self.g, self.d
        if self.distributed:
            ids = [self.device.index] if cuda else None
            self.g_wrapped, self.d_wrapped = DDP(self.g, device_ids=ids), DDP(self.d, device_ids=ids)
        self.opt_g = self._optimizer(self.g.parameters(), recipe.lr_g)
        self.opt_d = self._optimizer(self.d.parameters(), recipe.lr_d)
        # D as the G step uses it: not wrapped in DDP, since its weights are frozen there.
        self.g_forward, self.d_forward, self.d_forward_frozen, compiled = (
            self._compiled() if options.compile else (self.g_wrapped, self.d_wrapped, self.d, False))
        self.speed_flags = {"device": str(self.device), "tf32": cuda and not options.no_tf32, "bf16": self.bf16,
                            "channels_last": self.channels_last, "compile": compiled, "processes": self.world,
                            "batch_per_process": self.local_batch}

        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(self.device)
        self.labels = torch.from_numpy(labels.astype(np.int64)).to(self.device) if self.n_classes else None
        self.n_local = len(images) // self.world
        self.batches_per_epoch = self.n_local // self.local_batch
        if self.batches_per_epoch < 1:
            raise TrainingError(f"{len(images)} images are fewer than one batch of {recipe.batch_size}; lower --batch-size")
        if self.batches_per_epoch < recipe.n_critic:
            raise TrainingError(f"an epoch of {self.batches_per_epoch} batches is shorter than n_critic={recipe.n_critic}; "
                                f"lower --batch-size or --n-critic, or add images")
        self.sample_z = torch.from_numpy(latents(SAMPLE_SEEDS, recipe.z_dim)).to(self.device)
        classes = sample_classes(len(SAMPLE_SEEDS), self.n_classes)
        self.sample_y = torch.from_numpy(classes).to(self.device) if classes is not None else None
        self.epoch, self.batch, self.step, self.seconds = 0, 0, 0, 0.0
        self.best_fid = math.inf
        self.interrupted: int | None = None  # signal number, set by a handler: stop after this step, save, exit
        self.sums = torch.zeros(len(STATS), device=self.device)  # summed on the device, read every --log-every
        self.epoch_sums = torch.zeros(len(STATS), device=self.device)
        self.n_sums = self.n_epoch = 0

    def _optimizer(self, params, lr: float) -> torch.optim.Optimizer:
        if self.recipe.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=lr)
        if self.recipe.optimizer == "adam":
            return torch.optim.Adam(params, lr=lr, betas=(self.recipe.beta1, self.recipe.beta2))
        raise TrainingError(f"unknown optimizer {self.recipe.optimizer!r}; choose adam or rmsprop")

    def _compiled(self):
        """torch.compile'd G and D, tried on one forward and backward first; eager ones if that fails
        (ConvTranspose's backward with channels_last crashed the compiler on PyTorch 2.11)."""
        saved = [{k: v.clone() for k, v in net.state_dict().items()} for net in (self.g, self.d)]
        try:
            g_c, d_c, d_g = torch.compile(self.g_wrapped), torch.compile(self.d_wrapped), torch.compile(self.d)
            z = torch.randn(self.local_batch, self.recipe.z_dim, device=self.device,
                            generator=torch.Generator(self.device).manual_seed(0))  # leaves the run's RNG alone
            y = torch.zeros(self.local_batch, dtype=torch.long, device=self.device) if self.n_classes else None
            with torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16):
                d_c(g_c(z, y), y).float().mean().backward()
            return g_c, d_c, d_g, True
        except Exception as exc:  # noqa: BLE001 - any compiler failure means: train eagerly
            log.warning("torch.compile failed (%s: %s); training eagerly", type(exc).__name__, str(exc).split("\n")[0][:200])
            return self.g_wrapped, self.d_wrapped, self.d, False
        finally:  # the probe must not change the run: weights, BatchNorm and spectral-norm state, gradients
            for net, state in zip((self.g, self.d), saved):
                net.load_state_dict(state)
            self.opt_g.zero_grad(set_to_none=True)
            self.opt_d.zero_grad(set_to_none=True)

    @property
    def images_seen(self) -> int:
        """Real images shown to D so far (the unit of EMA half-lives and schedules)."""
        return self.step * self.recipe.n_critic * self.recipe.batch_size

    @property
    def epochs_done(self) -> float:
        return self.epoch + self.batch / self.batches_per_epoch

    def set_learning_rates(self, lr_g: float, lr_d: float) -> None:
        """The recipe's and both optimisers' learning rates (a fallback after a failed early check)."""
        import dataclasses

        self.recipe = dataclasses.replace(self.recipe, lr_g=lr_g, lr_d=lr_d)
        for opt, lr in ((self.opt_g, lr_g), (self.opt_d, lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        return {
            "recipe": self.recipe.to_dict(), "G": self.g.state_dict(), "D": self.d.state_dict(),
            "EMA": self.ema.state_dict() if self.ema else None,
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "epoch": self.epoch, "batch": self.batch, "step": self.step, "seconds": self.seconds,
            "best_fid": self.best_fid if math.isfinite(self.best_fid) else None,
            "seed": self.options.seed, "data": self.data_info, "classes": self.class_names,
            "options": self.options.saved(), "bf16": self.bf16,
        }

    def load_state_dict(self, s: dict) -> None:
        """Everything back as it was (a fine-tune loads its networks with trainer.finetune instead)."""
        self.g.load_state_dict(s["G"])
        self.d.load_state_dict(s["D"])
        if self.ema and s.get("EMA") is not None:
            self.ema.load_state_dict(s["EMA"])
        elif self.ema:  # a state without an EMA (a recipe that had none): the average starts at G
            self.ema.module.load_state_dict(self.g.state_dict())
        if s.get("opt_g") is not None:
            self.opt_g.load_state_dict(s["opt_g"])
            self.opt_d.load_state_dict(s["opt_d"])
            # The optimiser's state carries the learning rates it was saved with; the recipe (with
            # any --lr-g / --lr-d given to --resume) is what this run trains with.
            for opt, lr in ((self.opt_g, self.recipe.lr_g), (self.opt_d, self.recipe.lr_d)):
                for group in opt.param_groups:
                    group["lr"] = lr
        torch.set_rng_state(s["rng_cpu"])
        if s.get("rng_cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(s["rng_cuda"], self.device)
        self.epoch, self.batch, self.step, self.seconds = s["epoch"], s["batch"], s["step"], s["seconds"]
        self.best_fid = s["best_fid"] if s.get("best_fid") is not None else math.inf
        # A resumed `auto` run keeps the arithmetic it started with: a new probe may choose the other
        # one, and the run would no longer continue exactly. Not where this CPU would emulate bf16.
        from trainer.precision import cpu_has_bf16

        saved = s.get("bf16")
        if self.options.precision == "auto" and saved is not None and saved != self.bf16 and (
                not saved or (self.device.type == "cpu" and cpu_has_bf16())):
            self.bf16 = self.speed_flags["bf16"] = saved
            self.precision_note = f"{'bf16' if saved else 'fp32'} (auto: kept from the run's start)"

    def generator_for_export(self) -> torch.nn.Module:
        """G as it will be shipped: the EMA weights, with BatchNorm statistics measured for them
        (measured once per step: the files, the samples and the early checks share them)."""
        if not self.ema:
            return self.g
        cached = getattr(self, "_export", None)
        if cached is None or cached[0] != self.step:
            g = copy.deepcopy(self.ema.module)
            self._export = (self.step, recalibrate_batchnorm(g, batches=8 if self.device.type == "cpu" else 32,
                                                             batch_size=calibration_batch(self.recipe.batch_size)))
        return self._export[1]
