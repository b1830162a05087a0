"""Train a GAN on 64x64 faces and write Generator.pth.

    python -m trainer.train --data ../shared/data/anime-faces-64.zip --recipe best --out runs/best
    python -m trainer.train --resume runs/best            # continue where it stopped
    torchrun --nproc_per_node 2 -m trainer.train ...      # DistributedDataParallel

Reads top to bottom: arguments, set-up, the training step, the loop, the files it writes.
The step loop never waits for the GPU: batches are cut from a permutation on the device, labels
and flips are drawn there, the EMA's decay comes from host counters, and losses are read back
only every --log-every steps. Outputs are written every --checkpoint-minutes and at the end.
"""
from __future__ import annotations

import argparse
import copy
import logging
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from core.dataset import dataset_fingerprint, load_images
from core.errors import UserError
from core.seeds import LATENT_RULE, latents
from trainer.checkpoint import load_torch, save_json, save_torch
from trainer.config import Recipe
from trainer.diffaug import diff_augment, parse_policy
from trainer.ema import EMA
from trainer.networks import discriminator_for, generator_for, recalibrate_batchnorm
from trainer.objectives import objective_for
from trainer.options import parse_args, recipe_from_args
from trainer.run_files import (
    LossLog,
    check_writable,
    device_name,
    parameter_count,
    save_samples,
)
from trainer.signals import stop_on_signals

log = logging.getLogger("trainer")
SAMPLE_SEEDS = range(64)  # fixed seeds for the sample grids, so they compare face by face
STATS = ("loss_d", "loss_g", "d_real", "d_fake")


class TrainingError(UserError):
    """A run that cannot start or must stop; the message is shown as one line."""


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffle of one epoch depends only on (seed, epoch), so a resumed run sees the same order."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


# ----------------------------------------------------------------------------- the trainer

class Trainer:
    def __init__(self, recipe: Recipe, images: np.ndarray, out: Path, args: argparse.Namespace, data_info: dict):
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

        torch.manual_seed(args.seed)
        np.random.seed(args.seed)
        self.objective = objective_for(recipe)
        self.g = generator_for(recipe)
        self.d = discriminator_for(recipe, sigmoid=self.objective.probabilities)
        for net in (self.g, self.d):
            getattr(net, "initialise", lambda: None)()
            net.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        self.ema = EMA(self.g, recipe.ema_kimg, recipe.ema_rampup) if recipe.ema_kimg > 0 else None
        self.g_train, self.d_train = self.g, self.d
        if self.distributed:
            ids = [self.device.index] if cuda else None
            self.g_train, self.d_train = DDP(self.g, device_ids=ids), DDP(self.d, device_ids=ids)
        self.opt_g = self._optimizer(self.g.parameters(), recipe.lr_g)
        self.opt_d = self._optimizer(self.d.parameters(), recipe.lr_d)
        self.g_fwd, self.d_fwd, compiled = self._compiled() if args.compile else (self.g_train, self.d_train, False)
        self.speed_flags = {"device": str(self.device), "tf32": cuda and not args.no_tf32, "bf16": self.bf16,
                            "channels_last": self.channels_last, "compile": compiled, "processes": self.world,
                            "batch_per_process": self.local_batch}

        # The whole data set lives on the device as uint8 (282 MB for 23k faces): no loader, no copies.
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(self.device)
        self.n_local = len(images) // self.world
        self.batches_per_epoch = self.n_local // self.local_batch
        if self.batches_per_epoch < 1:
            raise TrainingError(f"{len(images)} images are fewer than one batch of {recipe.batch_size}; lower --batch-size")
        if self.batches_per_epoch < recipe.n_critic:
            raise TrainingError(f"an epoch of {self.batches_per_epoch} batches is shorter than n_critic={recipe.n_critic}; "
                                f"lower --batch-size or --n-critic, or add images")
        self.sample_z = torch.from_numpy(latents(SAMPLE_SEEDS, recipe.z_dim)).to(self.device)
        self.epoch, self.batch, self.step, self.seconds = 0, 0, 0, 0.0
        self.best_fid = math.inf
        self.interrupted: int | None = None  # signal number, set by a handler: stop after this step, save, exit
        self._sums = torch.zeros(len(STATS), device=self.device)  # summed on the device, read every --log-every
        self._epoch_sums = torch.zeros(len(STATS), device=self.device)
        self._n_sums = self._n_epoch = 0

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

    def _compiled(self):
        """torch.compile'd G and D, tried on one forward and backward first; eager ones if that fails
        (ConvTranspose's backward with channels_last crashed the compiler on PyTorch 2.11)."""
        saved = [{k: v.clone() for k, v in net.state_dict().items()} for net in (self.g, self.d)]
        try:
            g_c, d_c = torch.compile(self.g_train), torch.compile(self.d_train)
            z = torch.randn(self.local_batch, self.r.z_dim, device=self.device,
                            generator=torch.Generator(self.device).manual_seed(0))  # leaves the run's RNG alone
            with torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16):
                d_c(g_c(z)).float().mean().backward()
            return g_c, d_c, True
        except Exception as exc:  # noqa: BLE001 - any compiler failure means: train eagerly
            log.warning("torch.compile failed (%s: %s); training eagerly", type(exc).__name__, str(exc).split("\n")[0][:200])
            return self.g_train, self.d_train, False
        finally:  # the probe must not change the run: weights, BatchNorm and spectral-norm state, gradients
            for net, state in zip((self.g, self.d), saved):
                net.load_state_dict(state)
            self.opt_g.zero_grad(set_to_none=True)
            self.opt_d.zero_grad(set_to_none=True)

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
        """Images of batch `index` of the epoch; `perm` lives on the device, so this is all device work."""
        start = self.rank * self.n_local + index * self.local_batch  # each process owns one shard
        x = self.images[perm[start:start + self.local_batch]].float().div_(127.5).sub_(1.0)
        if self.r.flip:
            flip = torch.rand(x.shape[0], device=self.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _generate(self, z: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16):
            return self.g_fwd(z).float()

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        if self.r.diffaug:
            x = diff_augment(x, self.r.diffaug)
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16):
            return self.d_fwd(x).float()

    def train_step(self, reals: list[torch.Tensor]) -> None:
        """n_critic D steps (one per real batch), then one G step; statistics stay on the device."""
        r, obj = self.r, self.objective
        # With one D step per G step, one batch of fakes serves both steps, as in the seed report.
        share_fakes = r.n_critic == 1
        for real in reals:
            z = torch.randn(real.shape[0], r.z_dim, device=self.device)
            with torch.set_grad_enabled(share_fakes):
                fake = self._generate(z)
            d_real, d_fake = self._score(real), self._score(fake.detach())
            loss_d = obj.d_loss(d_real, d_fake)
            penalty = obj.d_penalty(self.d_train, real, fake, self.step)
            if penalty is not None:
                loss_d = loss_d + penalty
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            obj.after_d_step(self.d)
        if not share_fakes:
            fake = self._generate(torch.randn(self.local_batch, r.z_dim, device=self.device))
        real_scores = None
        if obj.relativistic:
            with torch.no_grad():
                real_scores = self._score(reals[-1])
        loss_g = obj.g_loss(self._score(fake), real_scores)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        if self.ema:
            self.ema.update(self.g, (self.step + 1) * r.batch_size, r.batch_size)
        values = torch.stack([loss_d.detach(), loss_g.detach(), d_real.detach().mean(), d_fake.detach().mean()])
        self._sums += values
        self._epoch_sums += values
        self._n_sums += 1
        self._n_epoch += 1

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        from tqdm import tqdm

        r, a = self.r, self.args
        if self.is_main:
            log.info("recipe %s: %s", r.name, r.description)
            log.info("speed settings: %s; G %.2f M parameters, D %.2f M", self.speed_flags,
                     parameter_count(self.g) / 1e6, parameter_count(self.d) / 1e6)
        self.losses = LossLog(self.out / "losses.csv", self.step) if self.is_main else None
        steps_per_epoch = self.batches_per_epoch // r.n_critic
        t_mark = t_saved = t_rate = time.time()
        images_since = 0
        stop = False
        while self.epoch < r.epochs and not stop:
            perm = epoch_permutation(len(self.images), a.seed, self.epoch).to(self.device)  # one copy an epoch
            t_epoch = time.time()
            bar = tqdm(total=steps_per_epoch, initial=self.batch // r.n_critic, unit="step", leave=False,
                       desc=f"epoch {self.epoch + 1}/{r.epochs}", disable=a.quiet or not self.is_main)
            while self.batch + r.n_critic <= self.batches_per_epoch:
                self.train_step([self.real_batch(perm, self.batch + i) for i in range(r.n_critic)])
                self.batch += r.n_critic
                self.step += 1
                images_since += r.n_critic * r.batch_size
                bar.update(1)
                if self.step % a.log_every == 0 or self.step == a.max_steps:
                    row = self._log_row(images_since / max(time.time() - t_rate, 1e-9))
                    t_rate, images_since = time.time(), 0
                    bar.set_postfix(loss_d=f"{row['loss_d']:.3f}", loss_g=f"{row['loss_g']:.3f}",
                                    img_s=f"{row['images_per_s']:.0f}")
                stop = bool((a.max_steps and self.step >= a.max_steps) or self.interrupted or
                            (a.max_minutes and self.seconds + time.time() - t_mark >= a.max_minutes * 60))
                if stop:
                    break
                if time.time() - t_saved > a.checkpoint_minutes * 60:
                    self.seconds += time.time() - t_mark
                    self.save_outputs()
                    t_mark = t_saved = time.time()
            bar.close()
            if self.batch + r.n_critic > self.batches_per_epoch:
                self.epoch, self.batch = self.epoch + 1, 0
                self._log_epoch(time.time() - t_epoch)
                if a.eval_every and self.epoch % a.eval_every == 0:
                    self.seconds += time.time() - t_mark
                    self.evaluate_and_keep_best()
                    t_mark = time.time()
        self.seconds += time.time() - t_mark
        self.save_outputs()
        if self.is_main and self.interrupted:
            log.info("interrupted (%s) at step %d: checkpoint and Generator.pth saved; continue with: "
                     "python -m trainer.train --resume %s", signal.Signals(self.interrupted).name, self.step, self.out)
        elif self.is_main:
            log.info("done: %d steps, %.2f epochs, %.0f s; outputs in %s", self.step,
                     self.epoch + self.batch / self.batches_per_epoch, self.seconds, self.out)

    def _read(self, sums: torch.Tensor, n: int) -> dict:
        """The one place values come back from the device: means since the last read, checked finite."""
        means = (sums / max(1, n)).tolist()
        sums.zero_()
        bad = [k for k, v in zip(STATS, means) if not math.isfinite(v)]
        if bad:
            raise TrainingError(f"non-finite {', '.join(bad)} at step {self.step} (epoch {self.epoch + 1}); "
                                f"stopped without overwriting the last good checkpoint and generator in {self.out}. "
                                f"Try a lower learning rate, then --resume {self.out}")
        return dict(zip(STATS, means))

    def _log_row(self, images_per_s: float) -> dict:
        row = {"step": self.step, "epoch": round(self.epoch + self.batch / self.batches_per_epoch, 4),
               **self._read(self._sums, self._n_sums), "images_per_s": round(images_per_s, 1)}
        self._n_sums = 0
        if self.is_main:
            self.losses.append(row)
        return row

    def _log_epoch(self, seconds: float) -> None:
        means = self._read(self._epoch_sums, self._n_epoch)
        n, self._n_epoch = self._n_epoch, 0
        if self.is_main:
            log.info("epoch %d/%d step %d | loss_d %.4f loss_g %.4f | %.0f img/s", self.epoch, self.r.epochs,
                     self.step, means["loss_d"], means["loss_g"], n * self.r.n_critic * self.r.batch_size / max(seconds, 1e-9))

    # ------------------------------------------------------------------ files

    def generator_for_export(self) -> torch.nn.Module:
        """G as it will be shipped: the EMA weights, with BatchNorm statistics measured for them."""
        if not self.ema:
            return self.g
        g = copy.deepcopy(self.ema.module)
        return recalibrate_batchnorm(g, batches=8 if self.device.type == "cpu" else 32)

    def card(self) -> dict:
        return {
            "arch": self.g.arch(), "recipe": self.r.to_dict(), "weights": "ema" if self.ema else "raw",
            "dataset": self.data_info, "epochs": round(self.epoch + self.batch / self.batches_per_epoch, 3),
            "steps": self.step, "seconds": round(self.seconds, 1), "seed": self.args.seed,
            "latent_rule": LATENT_RULE, "output_range": [-1, 1], "g_parameters": parameter_count(self.g),
            "hardware": device_name(self.device), "speed": self.speed_flags,
            "torch": torch.__version__, "best_fid": self.best_fid if math.isfinite(self.best_fid) else None,
        }

    def save_outputs(self) -> None:
        """checkpoint.pt, Generator.pth, generator.json, a sample grid and the loss plot, after checking
        that the losses since the last read are finite (a NaN run keeps its last good files)."""
        self._read(self._sums.clone(), self._n_sums)
        if not self.is_main:
            return
        save_torch(self.state_dict(), self.out / "checkpoint.pt")
        g = self.generator_for_export()
        save_torch({k: v.detach().cpu() for k, v in g.state_dict().items()}, self.out / "Generator.pth")
        save_json(self.card(), self.out / "generator.json")
        save_samples(g, self.sample_z, self.out / "samples" / f"step_{self.step:07d}.png")
        self.losses.plot(self.out / "losses.png", self.r.name)

    def evaluate_and_keep_best(self) -> None:
        if not self.is_main:
            return
        from trainer.evaluate import fid_of_torch_generator

        g = self.generator_for_export()
        was_training = g.training
        result = fid_of_torch_generator(g.eval(), self.data_info["path"], n=self.args.eval_n,
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
    args = parse_args(argv, __doc__)
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
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if distributed:
            dist.destroy_process_group()


def _checkpoint_bytes(r: Recipe) -> int:
    n_g = parameter_count(generator_for(r))
    n_d = parameter_count(discriminator_for(r, sigmoid=False))
    # G, D, EMA and Adam's two moments for each, float32, plus the written Generator.pth; x2 for the temp copy.
    return int(4 * (n_g * (3 + (1 if r.ema_kimg else 0)) + n_d * 3 + n_g) * 2)


if __name__ == "__main__":
    sys.exit(main())
