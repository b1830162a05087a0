"""Train a GAN on 64x64 faces and write Generator.pth.

    python -m trainer.train --data ../shared/data/anime-faces-64.zip --recipe best --out runs/best
    python -m trainer.train --resume runs/best            # continue where it stopped
    torchrun --nproc_per_node 2 -m trainer.train ...      # DistributedDataParallel

Reads top to bottom: arguments, set-up, the training step, the loop, the files it writes.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import dataclasses
import logging
import math
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.optim.swa_utils import AveragedModel

from trainer import losses
from trainer.checkpoint import CheckpointError, load_torch, save_json, save_torch
from trainer.config import RECIPES, Recipe, get_recipe
from trainer.data import DataError, dataset_fingerprint, load_images
from trainer.diffaug import diff_augment, parse_policy
from trainer.latents import LATENT_RULE, latents_for_seeds, make_grid, to_uint8
from trainer.models import Discriminator, Generator, init_weights, recalibrate_batchnorm

log = logging.getLogger("trainer")
SAMPLE_SEEDS = range(64)  # fixed seeds for samples/epoch_NNNN.png, so epochs compare face by face


class TrainingError(RuntimeError):
    """A run that cannot start or must stop; the message is shown as one line."""


# ----------------------------------------------------------------------------- arguments

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trainer.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="folder or .zip of face images")
    p.add_argument("--recipe", default="best", choices=sorted(RECIPES), help="named recipe (default: best)")
    p.add_argument("--out", help="run folder (default: runs/<recipe>)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its checkpoint.pt")
    p.add_argument("--max-steps", type=int, help="stop after this many generator steps in total")
    p.add_argument("--max-minutes", type=float, help="stop after this much training time in total (all resumes)")
    p.add_argument("--seed", type=int, default=0, help="run seed: init, shuffling, noise (default 0)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--checkpoint-minutes", type=float, default=10.0,
                   help="also write checkpoint.pt this often within an epoch (default 10)")
    p.add_argument("--log-every", type=int, default=10, help="log losses every N generator steps")
    p.add_argument("--eval-every", type=int, default=0,
                   help="FID every N epochs; keeps Generator-best.pth (default 0 = off)")
    p.add_argument("--eval-n", type=int, default=5000, help="generated images for --eval-every FID")
    p.add_argument("--eval-ref-n", type=int, default=10000, help="reference images for --eval-every FID")
    p.add_argument("--bf16", action="store_true", help="CUDA: bfloat16 autocast")
    p.add_argument("--channels-last", action="store_true", help="CUDA: channels_last memory format")
    p.add_argument("--no-tf32", action="store_true", help="CUDA: disable TF32 matmuls/convolutions")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    g = p.add_argument_group("recipe overrides (default: the recipe's value)")
    for f in dataclasses.fields(Recipe):
        if f.name in ("name", "description", "source"):
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            g.add_argument(flag, type=_parse_bool, metavar="BOOL")
        elif "tuple" in str(f.type):
            g.add_argument(flag, type=_parse_pair, metavar="A,B")
        else:
            kind = {"int": int, "float": float, "str": str}[str(f.type)]
            g.add_argument(flag, type=kind)
    p.add_argument("--lr", type=float, help="set both --lr-g and --lr-d")
    args = p.parse_args(argv)
    if not args.resume and not args.data:
        p.error("--data is required (or --resume DIR)")
    return args


def _parse_bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {s!r}")


def _parse_pair(s: str) -> tuple[float, float]:
    try:
        a, b = (float(x) for x in s.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers A,B, got {s!r}") from None
    return (a, b)


def recipe_from_args(args: argparse.Namespace, base: Recipe | None = None) -> Recipe:
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Recipe)
                 if f.name not in ("name", "description", "source") and getattr(args, f.name, None) is not None}
    if args.lr is not None:
        overrides.setdefault("lr_g", args.lr)
        overrides.setdefault("lr_d", args.lr)
    if base is not None:
        return dataclasses.replace(base, **overrides)
    return get_recipe(args.recipe, **overrides)


# ----------------------------------------------------------------------------- set-up helpers

def hardware_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor() or "cpu"


def check_writable(out: Path, need_bytes: int) -> None:
    """Fail at start, not after an hour, when the run folder cannot take the files."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        # A unique probe name: under torchrun every process checks the same folder at once.
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise TrainingError(f"cannot write to output folder {out}: {exc.strerror or exc}") from None
    free = shutil.disk_usage(out).free
    if free < need_bytes:
        raise TrainingError(f"not enough free disk space in {out}: {free / 1e6:.0f} MB free, "
                            f"checkpoints need about {need_bytes / 1e6:.0f} MB")


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffle of one epoch depends only on (seed, epoch), so a resumed run sees the same order."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g)


def ema_with_warmup(decay: float):
    """EMA update with decay min(decay, (1 + n) / (10 + n)) after n updates.

    A fixed 0.999 from step 1 keeps 70 % of the (grey) initial weights after an epoch of 358
    steps; the warm-up lets the average follow G early and settle to `decay` later.
    """
    def avg(averaged: torch.Tensor, current: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        d = min(decay, (1.0 + float(n)) / (10.0 + float(n)))
        return averaged * d + current * (1.0 - d)
    return avg


# ----------------------------------------------------------------------------- the trainer

class Trainer:
    def __init__(self, recipe: Recipe, images: np.ndarray, out: Path, args: argparse.Namespace,
                 data_info: dict):
        self.r, self.out, self.args, self.data_info = recipe, out, args, data_info
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        self.is_main = self.rank == 0
        self.device = self._pick_device(args.device)
        if recipe.batch_size % self.world:
            raise TrainingError(f"batch size {recipe.batch_size} is not divisible by {self.world} processes")
        self.local_batch = recipe.batch_size // self.world
        if recipe.diffaug:
            parse_policy(recipe.diffaug)
        cuda = self.device.type == "cuda"
        self.bf16 = cuda and args.bf16
        self.channels_last = cuda and args.channels_last
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = not args.no_tf32
            torch.backends.cudnn.allow_tf32 = not args.no_tf32
            torch.backends.cudnn.benchmark = True
        self.speed_flags = {"device": str(self.device), "tf32": cuda and not args.no_tf32, "bf16": self.bf16,
                            "channels_last": self.channels_last, "processes": self.world,
                            "batch_per_process": self.local_batch}

        torch.manual_seed(args.seed)
        np.random.seed(args.seed)
        self.g = Generator(recipe.z_dim, recipe.g_width)
        self.d = Discriminator(recipe.d_width, recipe.d_norm, recipe.d_sigmoid)
        self.g.apply(init_weights)
        self.d.apply(init_weights)
        mf = torch.channels_last if self.channels_last else torch.contiguous_format
        self.g.to(self.device, memory_format=mf)
        self.d.to(self.device, memory_format=mf)
        self.ema = (AveragedModel(self.g, avg_fn=ema_with_warmup(recipe.ema_decay), use_buffers=True)
                    if recipe.ema_decay > 0 else None)
        self.g_train, self.d_train = self.g, self.d
        if self.distributed:
            ids = [self.device.index] if cuda else None
            self.g_train = DDP(self.g, device_ids=ids)
            self.d_train = DDP(self.d, device_ids=ids)
        self.opt_g = self._optimizer(self.g.parameters(), recipe.lr_g)
        self.opt_d = self._optimizer(self.d.parameters(), recipe.lr_d)

        # The whole data set lives on the device as uint8 (282 MB for 23k faces): no loader, no copies.
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(self.device)
        self.n_local = len(images) // self.world
        self.batches_per_epoch = self.n_local // self.local_batch
        if self.batches_per_epoch < 1:
            raise TrainingError(f"{len(images)} images are fewer than one batch of {recipe.batch_size}; "
                                f"lower --batch-size")
        if self.batches_per_epoch < recipe.n_critic:
            raise TrainingError(f"an epoch of {self.batches_per_epoch} batches is shorter than n_critic={recipe.n_critic}; "
                                f"lower --batch-size or --n-critic, or add images")
        self.sample_z = torch.from_numpy(latents_for_seeds(SAMPLE_SEEDS, recipe.z_dim)).to(self.device)
        self.epoch, self.batch, self.step, self.seconds = 0, 0, 0, 0.0
        self.best_fid = math.inf
        self.interrupted: int | None = None  # signal number, set by a handler: stop after this step, save, exit
        self.history: list[dict] = []

    def _pick_device(self, want: str) -> torch.device:
        if want == "cuda" and not torch.cuda.is_available():
            raise TrainingError("--device cuda was asked for, but CUDA is not available here")
        if want == "cpu" or not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))

    def _optimizer(self, params, lr: float) -> torch.optim.Optimizer:
        if self.r.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=lr)
        if self.r.optimizer == "adam":
            return torch.optim.Adam(params, lr=lr, betas=(self.r.beta1, self.r.beta2))
        raise TrainingError(f"unknown optimizer {self.r.optimizer!r}")

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        return {
            "recipe": self.r.to_dict(), "G": self.g.state_dict(), "D": self.d.state_dict(),
            "EMA": self.ema.state_dict() if self.ema else None,
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "epoch": self.epoch, "batch": self.batch, "step": self.step, "seconds": self.seconds,
            "best_fid": self.best_fid if math.isfinite(self.best_fid) else None,
            "seed": self.args.seed, "data": self.data_info,
        }

    def load_state_dict(self, s: dict) -> None:
        self.g.load_state_dict(s["G"])
        self.d.load_state_dict(s["D"])
        if self.ema and s["EMA"] is not None:
            self.ema.load_state_dict(s["EMA"])
        self.opt_g.load_state_dict(s["opt_g"])
        self.opt_d.load_state_dict(s["opt_d"])
        torch.set_rng_state(s["rng_cpu"])
        if s["rng_cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(s["rng_cuda"], self.device)
        self.epoch, self.batch, self.step, self.seconds = s["epoch"], s["batch"], s["step"], s["seconds"]
        self.best_fid = s["best_fid"] if s.get("best_fid") is not None else math.inf

    # ------------------------------------------------------------------ one step

    def real_batch(self, perm: torch.Tensor, index: int) -> torch.Tensor:
        start = self.rank * self.n_local + index * self.local_batch  # each process owns one shard
        idx = perm[start:start + self.local_batch].to(self.device)
        x = self.images[idx].float().div_(127.5).sub_(1.0)
        if self.r.flip:
            flip = torch.rand(x.shape[0], device=self.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _labels(self, lo_hi: tuple[float, float]) -> float:
        # Drawn once per batch and rounded to two decimals, as in the seed report.
        lo, hi = lo_hi
        return lo if lo == hi else round(lo + (hi - lo) * torch.rand(()).item(), 2)

    def _d_scores(self, x: torch.Tensor) -> torch.Tensor:
        if self.r.diffaug:
            x = diff_augment(x, self.r.diffaug)
        with torch.autocast("cuda", torch.bfloat16, enabled=self.bf16):
            return self.d_train(x).float()

    def train_step(self, reals: list[torch.Tensor]) -> dict:
        """n_critic D steps (one per real batch), then one G step. Returns the logged values."""
        r = self.r
        fake = None
        for i, real in enumerate(reals):
            z = torch.randn(real.shape[0], r.z_dim, device=self.device)
            last = i == len(reals) - 1 and r.n_critic == 1
            # With one D step per G step the same fakes serve both steps, as in the seed report.
            with torch.set_grad_enabled(last), torch.autocast("cuda", torch.bfloat16, enabled=self.bf16):
                fake = self.g_train(z).float()
            real_t, fake_t = self._labels(r.real_label), self._labels(r.fake_label)
            d_real, d_fake = self._d_scores(real), self._d_scores(fake.detach())
            loss_d = losses.d_loss(r.loss, d_real, d_fake, real_t, fake_t)
            if r.gp_lambda > 0:
                loss_d = loss_d + r.gp_lambda * losses.gradient_penalty(self.d_train, real, fake.detach())
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            if r.clip > 0:
                with torch.no_grad():
                    for p in self.d.parameters():
                        p.clamp_(-r.clip, r.clip)
        if r.n_critic != 1:
            z = torch.randn(self.local_batch, r.z_dim, device=self.device)
            with torch.autocast("cuda", torch.bfloat16, enabled=self.bf16):
                fake = self.g_train(z).float()
        loss_g = losses.g_loss(r.loss, self._d_scores(fake))
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        if self.ema:
            self.ema.update_parameters(self.g)
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(),
                "d_real": d_real.detach().mean(), "d_fake": d_fake.detach().mean()}

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        from tqdm import tqdm

        r, a = self.r, self.args
        if self.is_main:
            log.info("recipe %s: %s", r.name, r.description)
            log.info("speed settings: %s", self.speed_flags)
            self._prepare_loss_log()
        last_ckpt = time.time()
        steps_per_epoch = self.batches_per_epoch // r.n_critic
        stop = False
        while self.epoch < r.epochs and not stop:
            perm = epoch_permutation(len(self.images), a.seed, self.epoch)
            bar = tqdm(total=steps_per_epoch, initial=self.batch // r.n_critic, unit="step", leave=False,
                       desc=f"epoch {self.epoch + 1}/{r.epochs}", disable=a.quiet or not self.is_main)
            t_rate, t_mark, done_images, sums, n_steps = time.time(), time.time(), 0, {}, 0
            while self.batch + r.n_critic <= self.batches_per_epoch:
                reals = [self.real_batch(perm, self.batch + i) for i in range(r.n_critic)]
                stats = self.train_step(reals)
                self.batch += r.n_critic
                self.step += 1
                n_steps += 1
                done_images += r.n_critic * r.batch_size
                for k, v in stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                if self.step % a.log_every == 0 or self.step == a.max_steps:
                    row = self._log_step(stats, done_images / max(time.time() - t_rate, 1e-9))
                    bar.set_postfix(loss_d=f"{row['loss_d']:.3f}", loss_g=f"{row['loss_g']:.3f}",
                                    img_s=f"{row['images_per_s']:.0f}")
                bar.update(1)
                if (a.max_steps and self.step >= a.max_steps) or self.interrupted:
                    stop = True
                    break
                if a.max_minutes and self.seconds + time.time() - t_mark >= a.max_minutes * 60:
                    stop = True
                    break
                if time.time() - last_ckpt > a.checkpoint_minutes * 60:
                    self.seconds += time.time() - t_mark
                    self._check_finite(sums)
                    self.save_checkpoint()
                    last_ckpt = t_mark = time.time()
            bar.close()
            self.seconds += time.time() - t_mark
            self._check_finite(sums)
            epoch_done = self.batch + r.n_critic > self.batches_per_epoch
            if epoch_done:
                self.epoch, self.batch = self.epoch + 1, 0
            if self.is_main:
                means = {k: float(v) / max(1, n_steps) for k, v in sums.items()}
                log.info("epoch %d/%d step %d | loss_d %.4f loss_g %.4f | %.0f img/s | %.0f s total",
                         self.epoch, r.epochs, self.step, means.get("loss_d", float("nan")),
                         means.get("loss_g", float("nan")), done_images / max(time.time() - t_rate, 1e-9),
                         self.seconds)
            if epoch_done and a.eval_every and self.epoch % a.eval_every == 0:
                self.evaluate_and_keep_best()
            self.save_outputs(samples=epoch_done or stop)
            last_ckpt = time.time()
        if self.is_main and self.interrupted:
            log.info("interrupted (%s) at step %d: checkpoint and Generator.pth saved; continue with: "
                     "python -m trainer.train --resume %s", signal.Signals(self.interrupted).name, self.step, self.out)
        elif self.is_main:
            log.info("done: %d steps, %d epochs, %.0f s; outputs in %s", self.step, self.epoch, self.seconds, self.out)

    def _check_finite(self, sums: dict) -> None:
        bad = [k for k, v in sums.items() if not math.isfinite(float(v))]
        if bad:
            raise TrainingError(f"non-finite {', '.join(bad)} at step {self.step} (epoch {self.epoch + 1}); "
                                f"stopped without overwriting the last good checkpoint and generator in {self.out}. "
                                f"Try a lower learning rate, then --resume {self.out}")

    # ------------------------------------------------------------------ files

    def generator_for_export(self) -> Generator:
        """G as it will be shipped: the EMA weights, with BatchNorm statistics measured for them."""
        if not self.ema:
            return self.g
        g = copy.deepcopy(self.ema.module)
        return recalibrate_batchnorm(g, batches=8 if self.device.type == "cpu" else 32)

    def _prepare_loss_log(self) -> None:
        path = self.out / "losses.csv"
        rows = []
        if path.exists():  # a resumed run drops rows logged after its checkpoint (a kill -9 may leave some)
            with open(path, newline="") as f:
                rows = [row for row in csv.DictReader(f) if int(row["step"]) <= self.step]
        self.history = [{k: float(v) for k, v in row.items()} for row in rows]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["step", "epoch", "loss_d", "loss_g", "d_real", "d_fake", "images_per_s"])
            w.writeheader()
            for row in rows:
                w.writerow(row)

    def _log_step(self, stats: dict, images_per_s: float) -> dict:
        row = {"step": self.step, "epoch": round(self.epoch + self.batch / self.batches_per_epoch, 4),
               **{k: float(v) for k, v in stats.items()}, "images_per_s": round(images_per_s, 1)}
        if self.is_main:
            self.history.append(row)
            with open(self.out / "losses.csv", "a", newline="") as f:
                csv.DictWriter(f, fieldnames=list(row)).writerow(row)
        return row

    def save_checkpoint(self) -> None:
        if self.is_main:
            save_torch(self.state_dict(), self.out / "checkpoint.pt")

    def card(self) -> dict:
        r = self.r
        return {
            "arch": {"name": "dcgan", "z_dim": r.z_dim, "g_width": r.g_width},
            "recipe": r.to_dict(), "weights": "ema" if self.ema else "raw",
            "dataset": self.data_info, "epochs": round(self.epoch + self.batch / self.batches_per_epoch, 3),
            "steps": self.step, "seconds": round(self.seconds, 1), "seed": self.args.seed,
            "latent_rule": LATENT_RULE, "output_range": [-1, 1],
            "hardware": hardware_name(self.device), "speed": self.speed_flags,
            "torch": torch.__version__, "best_fid": self.best_fid if math.isfinite(self.best_fid) else None,
        }

    def save_outputs(self, samples: bool = True) -> None:
        """checkpoint.pt, Generator.pth, generator.json, a sample grid and the loss plot."""
        if not self.is_main:
            return
        self.save_checkpoint()
        g = self.generator_for_export()
        save_torch({k: v.detach().cpu() for k, v in g.state_dict().items()}, self.out / "Generator.pth")
        save_json(self.card(), self.out / "generator.json")
        if samples:
            self.save_samples(self.out / "samples" / f"epoch_{self.epoch:04d}.png", g)
        self.plot_losses()

    @torch.no_grad()
    def save_samples(self, path: Path, g: Generator) -> None:
        from PIL import Image

        was_training = g.training
        g.eval()
        imgs = to_uint8(g(self.sample_z).float().cpu().numpy())
        g.train(was_training)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(make_grid(imgs, cols=8)).save(path)

    def plot_losses(self) -> None:
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
        ax.set_title(f"{self.r.name}: losses")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        tmp = self.out / ".losses.png.tmp.png"
        fig.savefig(tmp)
        plt.close(fig)
        os.replace(tmp, self.out / "losses.png")

    def evaluate_and_keep_best(self) -> None:
        if not self.is_main:
            return
        from trainer.evaluate import fid_of_torch_generator

        g = self.generator_for_export()
        was_training = g.training
        g.eval()
        result = fid_of_torch_generator(g, self.data_info["path"], n=self.args.eval_n,
                                        ref_n=self.args.eval_ref_n, device=self.device)
        g.train(was_training)
        log.info("epoch %d: FID %.2f (%s)", self.epoch, result["fid"], result["protocol"])
        with open(self.out / "fid.csv", "a") as f:
            f.write(f"{self.epoch},{self.step},{result['fid']:.4f},{result['protocol']}\n")
        if result["fid"] < self.best_fid:
            self.best_fid = result["fid"]
            save_torch({k: v.detach().cpu() for k, v in g.state_dict().items()}, self.out / "Generator-best.pth")
            save_json({**self.card(), "fid": result}, self.out / "generator-best.json")


# ----------------------------------------------------------------------------- entry point

def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        use_nccl = torch.cuda.is_available() and args.device != "cpu"
        dist.init_process_group("nccl" if use_nccl else "gloo")
        if use_nccl:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        if dist.get_rank() != 0:
            logging.getLogger().setLevel(logging.WARNING)
    try:
        state = None
        if args.resume:
            out = Path(args.resume)
            state = load_torch(out / "checkpoint.pt")
            recipe = recipe_from_args(args, Recipe.from_dict(state["recipe"]))
            data_info = state["data"]
            data_path = Path(args.data or data_info["path"])
            args.seed = state["seed"]
        else:
            recipe = recipe_from_args(args)
            data_path = Path(args.data)
            out = Path(args.out or f"runs/{recipe.name}")
            if (out / "checkpoint.pt").exists():
                raise TrainingError(f"{out} already holds a run; use --resume {out} or another --out")
        check_writable(out, need_bytes=_checkpoint_bytes(recipe))
        images, skipped = load_images(data_path, progress=not args.quiet)
        if skipped:
            log.warning("skipped %d unreadable image(s) in %s", skipped, data_path)
        if not args.resume:
            data_info = {"path": str(data_path), "images": int(len(images)), "skipped": skipped,
                         "sha256": dataset_fingerprint(data_path)}
        log.info("data: %d images from %s (%d skipped)", len(images), data_path, skipped)
        trainer = Trainer(recipe, images, out, args, data_info)
        if state is not None:
            trainer.load_state_dict(state)
            log.info("resumed %s at epoch %d, step %d", out, trainer.epoch, trainer.step)
        with stop_on_signals(trainer, enabled=not distributed):
            trainer.run()
        return 128 + trainer.interrupted if trainer.interrupted else 0  # the shell's code for death by that signal
    except (TrainingError, DataError, CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if distributed:
            dist.destroy_process_group()


@contextlib.contextmanager
def stop_on_signals(trainer: Trainer, enabled: bool = True) -> Iterator[None]:
    """Ctrl-C or SIGTERM finishes the current step, saves everything and exits (130 / 143).

    A second Ctrl-C stops at once (the last periodic checkpoint still holds). Under torchrun the
    processes could stop at different steps and hang in an all-reduce, so there the defaults stay
    and the periodic checkpoints are what --resume uses.
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if trainer.interrupted and signum == signal.SIGINT:
            raise KeyboardInterrupt
        trainer.interrupted = signum
        log.info("interrupted (%s): stopping after this step (Ctrl-C again to stop at once)",
                 signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _checkpoint_bytes(r: Recipe) -> int:
    g = Generator(r.z_dim, r.g_width)
    d = Discriminator(r.d_width, r.d_norm, r.d_sigmoid)
    n_g = sum(p.numel() for p in g.parameters())
    n_d = sum(p.numel() for p in d.parameters())
    # G, D, EMA and Adam's two moments for each, float32, plus the written Generator.pth; x2 for the temp copy.
    return int(4 * (n_g * (3 + (1 if r.ema_decay else 0)) + n_d * 3 + n_g) * 2)


if __name__ == "__main__":
    sys.exit(main())
