"""The loop's timing: epochs and steps, when to log, save, evaluate and stop.

The step loop never waits for the device: losses are read back every --log-every steps only, and
outputs are written every --checkpoint-minutes and at the end (trainer/run_files.py writes them).
"""
from __future__ import annotations

import logging
import math
import signal
import time
from pathlib import Path
from typing import Callable

import torch

from trainer.run_files import LossLog, parameter_count, write_outputs
from trainer.run_state import STATS, RunState, TrainingError
from trainer.step import apply_schedules, epoch_permutation, real_batch, train_step

log = logging.getLogger("trainer")


class TrainingLoop:
    def __init__(self, state: RunState, out: Path, on_save: Callable[[RunState], None] | None = None,
                 plot: bool = True):
        self.s, self.out = state, out
        self.on_save = on_save  # called after every save (the GPU session's snapshots)
        self.plot = plot        # the loss plot (matplotlib's first import can take 20 s on a fresh machine)
        self.losses: LossLog | None = None

    def _read(self, sums: torch.Tensor, n: int) -> dict:
        """The one place values come back from the device: means since the last read, checked finite."""
        s = self.s
        means = (sums / max(1, n)).tolist()
        sums.zero_()
        bad = [k for k, v in zip(STATS, means) if not math.isfinite(v)]
        if bad:
            raise TrainingError(f"non-finite {', '.join(bad)} at step {s.step} (epoch {s.epoch + 1}); "
                                f"stopped without overwriting the last good checkpoint and generator in {self.out}. "
                                f"Try a lower learning rate, then --resume {self.out}")
        return dict(zip(STATS, means))

    def log_row(self, images_per_s: float) -> dict:
        s = self.s
        row = {"step": s.step, "epoch": round(s.epochs_done, 4), **self._read(s.sums, s.n_sums),
               "images_per_s": round(images_per_s, 1)}
        s.n_sums = 0
        if s.is_main:
            self.losses.append(row)
        return row

    def _log_epoch(self, seconds: float) -> None:
        s = self.s
        means = self._read(s.epoch_sums, s.n_epoch)
        n, s.n_epoch = s.n_epoch, 0
        if s.is_main:
            log.info("epoch %d/%d step %d | loss_d %.4f loss_g %.4f | %.0f img/s", s.epoch, s.r.epochs, s.step,
                     means["loss_d"], means["loss_g"], n * s.r.n_critic * s.r.batch_size / max(seconds, 1e-9))

    def save(self) -> None:
        """Outputs after checking that the losses since the last read are finite (a NaN run keeps
        its last good files)."""
        self._read(self.s.sums.clone(), self.s.n_sums)
        if self.s.is_main:
            write_outputs(self.s, self.out, self.losses if self.plot else None)
            if self.on_save:
                self.on_save(self.s)

    def should_stop(self, elapsed: float) -> bool:
        """Limits in steps, in training minutes (all resumes), and a wall-clock deadline (a GPU call's)."""
        s, a = self.s, self.s.args
        deadline = getattr(a, "deadline", None)
        return bool((a.max_steps and s.step >= a.max_steps) or s.interrupted or
                    (getattr(a, "kimg", None) and s.images_seen >= a.kimg * 1000) or
                    (a.max_minutes and s.seconds + elapsed >= a.max_minutes * 60) or
                    (deadline and time.time() >= deadline))

    def run(self) -> None:
        from tqdm import tqdm

        s, r, a = self.s, self.s.r, self.s.args
        if s.is_main:
            log.info("recipe %s: %s", r.name, r.description)
            log.info("speed settings: %s; G %.2f M parameters, D %.2f M", s.speed_flags,
                     parameter_count(s.g) / 1e6, parameter_count(s.d) / 1e6)
        self.losses = LossLog(self.out / "losses.csv", s.step) if s.is_main else None
        steps_per_epoch = s.batches_per_epoch // r.n_critic
        t_mark = t_saved = t_rate = time.time()
        images_since = 0
        stop = self.should_stop(0.0)
        if (a.eval_every or getattr(a, "eval_every_kimg", 0)) and s.step == 0 and getattr(a, "finetune", None) and not getattr(a, "no_start_eval", False):
            self.evaluate_and_keep_best(start=True)  # where the fine-tune starts: the curve's first point
            t_mark = t_saved = t_rate = time.time()
        evaluated_at = s.step
        while s.epoch < r.epochs and not stop:
            perm = epoch_permutation(len(s.images), a.seed, s.epoch).to(s.device)  # one copy an epoch
            t_epoch = time.time()
            bar = tqdm(total=steps_per_epoch, initial=s.batch // r.n_critic, unit="step", leave=False,
                       desc=f"epoch {s.epoch + 1}/{r.epochs}", disable=a.quiet or not s.is_main)
            while s.batch + r.n_critic <= s.batches_per_epoch:
                apply_schedules(s)
                train_step(s, [real_batch(s, perm, s.batch + i) for i in range(r.n_critic)])
                seen_before = s.images_seen
                s.batch += r.n_critic
                s.step += 1
                images_since += r.n_critic * r.batch_size
                every = int(1000 * (getattr(a, "eval_every_kimg", 0) or 0))
                if every and s.images_seen // every > seen_before // every:
                    s.seconds += time.time() - t_mark
                    self.evaluate_and_keep_best()
                    t_mark, t_rate, images_since, evaluated_at = time.time(), time.time(), 0, s.step
                bar.update(1)
                if s.step % a.log_every == 0 or s.step == a.max_steps:
                    row = self.log_row(images_since / max(time.time() - t_rate, 1e-9))
                    t_rate, images_since = time.time(), 0
                    bar.set_postfix(loss_d=f"{row['loss_d']:.3f}", loss_g=f"{row['loss_g']:.3f}",
                                    img_s=f"{row['images_per_s']:.0f}")
                stop = self.should_stop(time.time() - t_mark)
                if stop:
                    break
                if time.time() - t_saved > a.checkpoint_minutes * 60:
                    s.seconds += time.time() - t_mark
                    self.save()
                    t_mark = t_saved = time.time()
            bar.close()
            if s.batch + r.n_critic > s.batches_per_epoch:
                s.epoch, s.batch = s.epoch + 1, 0
                self._log_epoch(time.time() - t_epoch)
                if a.eval_every and s.epoch % a.eval_every == 0:
                    s.seconds += time.time() - t_mark
                    self.evaluate_and_keep_best()
                    t_mark, evaluated_at = time.time(), s.step
        s.seconds += time.time() - t_mark
        if (a.eval_every or getattr(a, "eval_every_kimg", 0)) and s.step > evaluated_at and not s.interrupted:
            self.evaluate_and_keep_best()  # the run's last weights are measured too: they are what it ships
        self.save()
        if s.is_main and s.interrupted:
            log.info("interrupted (%s) at step %d: checkpoint and Generator.pth saved; continue with: "
                     "python -m trainer.train --resume %s", signal.Signals(s.interrupted).name, s.step, self.out)
        elif s.is_main:
            log.info("done: %d steps, %.2f epochs, %.0f s; outputs in %s", s.step, s.epochs_done, s.seconds, self.out)

    def evaluate_and_keep_best(self, start: bool = False) -> None:
        """FID (with class accuracy and per-class FID for a conditional G) of the weights as they would
        ship, one row of evals.csv; the best FID so far is kept as Generator-best.pth. A fine-tune's
        starting point is measured (start=True) but is not a candidate: it is the source's work."""
        s = self.s
        if not s.is_main:
            return
        from metrics.evaluate import fid_of_torch_generator
        from trainer.run_files import run_card, save_json, save_torch

        g = s.generator_for_export()
        was_training = g.training
        result = fid_of_torch_generator(g.eval(), s.data_info["path"], n=s.args.eval_n, ref_n=s.args.eval_ref_n,
                                        device=s.device, classes=s.class_names, weights=s.class_counts)
        g.train(was_training)
        accuracy = result.get("class_accuracy")
        log.info("epoch %d, step %d: FID %.2f%s (%s)", s.epoch, s.step, result["fid"],
                 "" if accuracy is None else f", class accuracy {100 * accuracy:.1f} %", result["protocol"])
        EvalLog(self.out / "evals.csv", s.class_names).append(s, result)
        if not start and result["fid"] < s.best_fid:
            s.best_fid = result["fid"]
            save_torch({k: v.detach().cpu() for k, v in g.state_dict().items()}, self.out / "Generator-best.pth")
            save_json({**run_card(s), "fid": result}, self.out / "generator-best.json")


class EvalLog:
    """evals.csv: one row per evaluation (step, images seen, training seconds, FID, and for a
    conditional G the class accuracy and each class's accuracy and FID), for plots of the trade-off
    over time. A resumed run keeps the rows up to its checkpoint's step."""

    def __init__(self, path: Path, classes: list[str]):
        self.path = path
        self.fields = ["epoch", "step", "images_seen", "seconds", "images_per_s", "fid", "kid", "kid_std", "precision",
                       "recall", "near_duplicates"]
        if classes:
            self.fields += ["class_accuracy", *(f"accuracy_{c}" for c in classes), *(f"fid_{c}" for c in classes)]

    def append(self, s: RunState, result: dict) -> None:
        import csv

        rows = []
        if self.path.is_file():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) < s.step]  # a kill -9 may leave later ones
        per_class = result.get("per_class", {})
        row = {"epoch": "" if s.epochs_done is None else round(s.epochs_done, 3), "step": s.step,
               "images_seen": s.images_seen, "seconds": round(s.seconds, 1),
               "images_per_s": round(s.images_seen / s.seconds, 1) if s.seconds and s.images_seen else "",
               "fid": round(result["fid"], 4), "kid": _round(result.get("kid"), 6), "kid_std": _round(result.get("kid_std"), 6),
               "precision": _round(result.get("precision")), "recall": _round(result.get("recall")),
               "near_duplicates": result.get("near_duplicates", ""),
               "class_accuracy": _round(result.get("class_accuracy")),
               **{f"accuracy_{c}": _round(v.get("class_accuracy")) for c, v in per_class.items()},
               **{f"fid_{c}": _round(v.get("fid")) for c, v in per_class.items()}}
        from core.files import atomic_write_text

        lines = [",".join(self.fields)] + [",".join(str(r.get(k, "")) for k in self.fields) for r in rows + [row]]
        atomic_write_text(self.path, "\n".join(lines) + "\n")


def _round(v: float | None, digits: int = 4) -> str:
    return "" if v is None else f"{v:.{digits}f}"
