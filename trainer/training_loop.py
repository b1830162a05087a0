"""The loop's timing: epochs and steps, when to log, save, evaluate and stop.

    TrainingLoop(run, Path("runs/best")).run()      # run: a trainer.run_state.RunState

The step loop never waits for the device: losses are read back every --log-every steps only, and
outputs are written every --checkpoint-minutes and at the end (trainer/run_files.py writes them).
A run stops at its limits (steps, images, training minutes over all resumes), at the time limit of
this process (early enough to save), and on Ctrl-C, SIGTERM or SIGUSR1 (trainer/signals.py), and
always saves before it stops. With --early-checks every save is checked first (trainer/checks.py).
"""
from __future__ import annotations

import logging
import math
import signal
import time
from pathlib import Path

import torch

from networks.files import load_torch, save_json, save_torch
from trainer.config import describe
from trainer.checks import SATURATED_READS, EarlyChecks, load_proxy, saturated
from trainer.evaluation import measure
from trainer.run_files import EvalLog, LossLog, parameter_count, run_card, write_outputs
from trainer.run_state import STATS, RunState, TrainingError
from trainer.step import apply_schedules, epoch_permutation, real_batch, train_step

log = logging.getLogger("trainer")
SAVE_MARGIN_S = 30.0  # before the first save is timed, the time kept for the last one under a time limit


class Rollback(Exception):
    """An early check failed: go back to the last good checkpoint."""


class TrainingLoop:
    dead: str | None = None  # why the run cannot learn any more (a saturated D), once it is known

    def __init__(self, run: RunState, out: Path, plot: bool = True):
        self.run_state, self.out = run, out
        self.plot = plot        # the loss plot (matplotlib's first import can take 20 s on a fresh machine)
        self.losses: LossLog | None = None
        self.save_s = SAVE_MARGIN_S / 2  # how long the last save took: the time limit keeps twice that
        self.checks = (EarlyChecks(load_proxy(run.options.proxy, run.device)) if run.options.early_checks else None)
        self.fell_back = False
        self.eval_s = 0.0  # how long the last evaluation took: none starts that would end past the time limit
        self.saturated_reads = 0  # loss reads in a row with D saturated (trainer/checks.py)

    def _read(self, sums: torch.Tensor, n: int) -> dict:
        """The one place values come back from the device: means since the last read, checked finite."""
        run = self.run_state
        means = (sums / max(1, n)).tolist()
        sums.zero_()
        bad = [k for k, v in zip(STATS, means) if not math.isfinite(v)]
        if bad and self.checks:
            raise Rollback(f"non-finite {', '.join(bad)} at step {run.step}")
        if bad:
            raise TrainingError(f"non-finite {', '.join(bad)} at step {run.step} (epoch {run.epoch + 1}); "
                                f"stopped without overwriting the last good checkpoint and generator in {self.out}. "
                                f"Try a lower learning rate, then --resume {self.out}")
        return dict(zip(STATS, means))

    def _check_saturation(self, values: dict) -> None:
        """Mark a run whose D has said exactly 0 or 1 of every image for SATURATED_READS reads in a
        row: it stops there, saved (with --early-checks it rolls back instead)."""
        p = saturated(self.run_state.objective.probabilities, values)
        self.saturated_reads = self.saturated_reads + 1 if p is not None else 0
        if self.saturated_reads >= SATURATED_READS:
            self.dead = (f"D saturated: it gave {p} for {SATURATED_READS * self.run_state.options.log_every} "
                         f"steps up to step {self.run_state.step}")
            if self.checks:
                raise Rollback(self.dead)

    def log_row(self, images_per_s: float) -> dict:
        run = self.run_state
        row = {"step": run.step, "epoch": round(run.epochs_done, 4), **self._read(run.sums, run.n_sums),
               "images_per_s": round(images_per_s, 1)}
        run.n_sums = 0
        if run.is_main:
            self.losses.append(row)
        self._check_saturation(row)
        return row

    def _log_epoch(self, seconds: float) -> None:
        run = self.run_state
        means = self._read(run.epoch_sums, run.n_epoch)
        n, run.n_epoch = run.n_epoch, 0
        if run.is_main:
            log.info("epoch %d/%d step %d | loss_d %.4f loss_g %.4f | %.0f img/s", run.epoch, run.recipe.epochs, run.step,
                     means["loss_d"], means["loss_g"], n * run.recipe.n_critic * run.recipe.batch_size / max(seconds, 1e-9))

    def save(self) -> None:
        """Outputs, after checking that the losses since the last read are finite (a NaN run keeps
        its last good files) and, with --early-checks, that the run has not gone wrong."""
        run = self.run_state
        t0 = time.time()
        self._read(run.sums.clone(), run.n_sums)
        if self.checks and run.is_main:
            why = self.checks.verdict(run, self.losses.history[-1] if self.losses and self.losses.history else {})
            if why:
                raise Rollback(why)
        if run.is_main:
            write_outputs(run, self.out, self.losses if self.plot else None)
        self.save_s = time.time() - t0

    def should_stop(self, elapsed: float) -> str | None:
        """Why the run stops now, or None: its limits in steps, images and training minutes (over all
        resumes), a signal, or this process's time limit, which keeps twice the last save's time (at
        least SAVE_MARGIN_S) for the save that ends it."""
        run, o = self.run_state, self.run_state.options
        deadline = o.deadline()
        if self.dead:
            return "D's saturation"
        if run.interrupted:
            return signal.Signals(run.interrupted).name
        if deadline and time.time() >= deadline - max(SAVE_MARGIN_S, 2 * self.save_s):
            return "the time limit"
        if ((o.max_steps and run.step >= o.max_steps) or (o.kimg and run.images_seen >= o.kimg * 1000)
                or (o.max_minutes and run.seconds + elapsed >= o.max_minutes * 60)):
            return "done"
        return None

    def run(self) -> None:
        """Train until a limit, rolling back once when an early check fails (--early-checks)."""
        while True:
            try:
                return self._train()
            except Rollback as why:
                if self.fell_back or not (self.out / "checkpoint.pt").is_file():
                    raise TrainingError(f"the early checks failed again ({why}); stopped with the last good "
                                        f"checkpoint in {self.out}") from None
                self._roll_back(str(why))

    def _roll_back(self, why: str) -> None:
        run = self.run_state
        lr_g, lr_d = run.recipe.lr_g / 2, run.recipe.lr_d / 2
        run.load_state_dict(load_torch(self.out / "checkpoint.pt"))
        run.set_learning_rates(lr_g, lr_d)
        run.sums.zero_()
        run.epoch_sums.zero_()
        run.n_sums = run.n_epoch = 0
        self.saturated_reads, self.dead = 0, None
        self.fell_back = True
        log.warning("early check failed (%s): rolled back to step %d; training on at half the learning rates "
                    "(G %g, D %g)", why, run.step, lr_g, lr_d)
        events = self.out / "events.csv"
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')},{run.step},rolled back: {why},lr_g {lr_g:g} lr_d {lr_d:g}\n"
        events.write_text((events.read_text() if events.is_file() else "time,step,event,then\n") + line)

    def _train(self) -> None:
        from tqdm import tqdm

        run, recipe, o = self.run_state, self.run_state.recipe, self.run_state.options
        if run.is_main:
            log.info("recipe %s: %s", recipe.name, describe(recipe.to_dict()))
            log.info("speed settings: %s; %s; G %.2f M parameters, D %.2f M", run.speed_flags, run.precision_note,
                     parameter_count(run.g) / 1e6, parameter_count(run.d) / 1e6)
        self.losses = LossLog(self.out / "losses.csv", run.step) if run.is_main else None
        steps_per_epoch = run.batches_per_epoch // recipe.n_critic
        t_mark = t_saved = t_rate = time.time()
        images_since = 0
        stop = self.should_stop(0.0)
        evaluating = o.eval_every or o.eval_every_kimg
        every = int(1000 * (o.eval_every_kimg or 0))
        if evaluating and run.step == 0 and o.finetune and not o.no_start_eval:
            self.evaluate_and_keep_best(start=True)  # where the fine-tune starts: the curve's first point
            t_mark = t_saved = t_rate = time.time()
        evaluated_at = run.step
        while run.epoch < recipe.epochs and not stop:
            perm = epoch_permutation(len(run.images), o.seed, run.epoch).to(run.device)  # one copy an epoch
            t_epoch = time.time()
            bar = tqdm(total=steps_per_epoch, initial=run.batch // recipe.n_critic, unit="step", leave=False,
                       desc=f"epoch {run.epoch + 1}/{recipe.epochs}", disable=o.quiet or not run.is_main)
            while run.batch + recipe.n_critic <= run.batches_per_epoch:
                apply_schedules(run)
                train_step(run, [real_batch(run, perm, run.batch + i) for i in range(recipe.n_critic)])
                seen_before = run.images_seen
                run.batch += recipe.n_critic
                run.step += 1
                images_since += recipe.n_critic * recipe.batch_size
                bar.update(1)
                if every and run.images_seen // every > seen_before // every:
                    run.seconds += time.time() - t_mark
                    self.evaluate_and_keep_best()
                    t_mark, t_rate, images_since, evaluated_at = time.time(), time.time(), 0, run.step
                if run.step % o.log_every == 0 or run.step == o.max_steps:
                    row = self.log_row(images_since / max(time.time() - t_rate, 1e-9))
                    t_rate, images_since = time.time(), 0
                    bar.set_postfix(loss_d=f"{row['loss_d']:.3f}", loss_g=f"{row['loss_g']:.3f}",
                                    img_s=f"{row['images_per_s']:.0f}")
                stop = self.should_stop(time.time() - t_mark)
                if stop:
                    break
                if time.time() - t_saved > o.checkpoint_minutes * 60:
                    run.seconds += time.time() - t_mark
                    self.save()
                    t_mark = t_saved = time.time()
            bar.close()
            if run.batch + recipe.n_critic > run.batches_per_epoch:
                run.epoch, run.batch = run.epoch + 1, 0
                self._log_epoch(time.time() - t_epoch)
                if o.eval_every and run.epoch % o.eval_every == 0:
                    run.seconds += time.time() - t_mark
                    self.evaluate_and_keep_best()
                    t_mark, evaluated_at = time.time(), run.step
        run.seconds += time.time() - t_mark
        self.save()  # first: the end's evaluation takes minutes, and a time limit may come before it ends
        deadline = o.deadline()
        if (evaluating and run.step > evaluated_at and stop in (None, "done")
                and not (deadline and time.time() + self.eval_s >= deadline)):
            self.evaluate_and_keep_best()  # the run's last weights are measured too: they are what it ships
        if self.dead:
            raise TrainingError(f"{self.dead}, so the sigmoid's gradient is zero and neither network can learn "
                                f"any more; stopped at step {run.step}, saved in {self.out}. Try a lower learning "
                                f"rate (--lr 2e-4) in a new run")
        if run.is_main and stop not in (None, "done"):
            log.info("stopped by %s at step %d: checkpoint and Generator.pth saved; continue with the same "
                     "command, or: python -m trainer.train --resume %s", stop, run.step, self.out)
        elif run.is_main:
            log.info("done: %d steps, %.2f epochs, %.0f s; outputs in %s", run.step, run.epochs_done, run.seconds, self.out)

    def evaluate_and_keep_best(self, start: bool = False) -> None:
        """FID (with KID, precision/recall, near-duplicates and for a conditional G the class accuracy
        and per-class FID) of the weights as they would ship, one row of evals.csv; the best FID so
        far is kept as Generator-best.pth. A fine-tune's starting point is measured (start=True) but
        is not a candidate: it is the source's work."""
        run = self.run_state
        if not run.is_main:
            return
        t0 = time.time()
        g = run.generator_for_export()
        was_training = g.training
        result = measure(g.eval(), run.data_info["path"], n=run.options.eval_n, ref_n=run.options.eval_ref_n,
                         device=run.device, classes=run.class_names, weights=run.class_counts)
        g.train(was_training)
        accuracy = result.get("class_accuracy")
        log.info("epoch %d, step %d: FID %.2f%s (%s)", run.epoch, run.step, result["fid"],
                 "" if accuracy is None else f", class accuracy {100 * accuracy:.1f} %", result["protocol"])
        EvalLog(self.out / "evals.csv", run.class_names).append(run, result)
        self.eval_s = time.time() - t0
        if not start and result["fid"] < run.best_fid:
            run.best_fid = result["fid"]
            save_torch({k: v.detach().cpu() for k, v in g.state_dict().items()}, self.out / "Generator-best.pth")
            save_json({**run_card(run), "fid": result}, self.out / "generator-best.json")
