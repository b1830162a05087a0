"""The distillation run: teacher, pruned student, optimiser and counters, its files and evaluations.

    run = Distillation(DistillOptions(teacher="demo/models/generator.onnx", g_width=64), device)
    train(run, Path("runs/edge-distill"), max_minutes=0, data=None, eval_every_kimg=0)

The command is trainer/distill/__main__.py (python -m trainer.distill).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path

import torch
from torch import nn

from core.errors import UserError
from core.seeds import LATENT_RULE, latents, seed_range
from networks import build_generator, recalibrate_batchnorm
from trainer.distill.adversary import Adversary
from trainer.distill.pruning import features, pruned_student
from trainer.evaluation import measure
from trainer.finetune.sources import load_generator_source
from trainer.run_files import EvalLog, LossLog, device_name, parameter_count, write_outputs
from trainer.run_state import sample_classes

log = logging.getLogger("trainer")
LOSS_FIELDS = ["step", "images_seen", "loss_pixels", "loss_features", "loss_adv", "loss_d", "lr", "images_per_s"]


@dataclasses.dataclass
class DistillOptions:
    """Everything that shapes the run; stored in checkpoint.pt and generator.json."""
    teacher: str
    g_width: int = 64
    kimg: float = 420.0            # images in the whole run (thousands): the learning rate's cosine spans them
    batch_size: int = 64
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)
    feature_weight: float = 1.0
    probe_n: int = 512             # latents that rank the teacher's channels
    seed: int = 0
    student: str | None = None     # start from this generator instead of the pruned copy
    adv_weight: float = 0.0        # weight of D's term beside the L1s (0: no discriminator)
    d_width: int = 64
    lr_d: float = 4e-4
    d_warmup_kimg: float = 0.0     # images D learns before its term reaches the student


class Distillation:
    """The run: teacher, student, optimiser and counters; state_dict() is checkpoint.pt."""

    def __init__(self, cfg: DistillOptions, device: torch.device, state: dict | None = None):
        """A new run, or with `state` (a checkpoint.pt) the run it holds: --student is then not read
        again, since the checkpoint's student replaces it."""
        self.cfg, self.device = cfg, device
        self.teacher, self.teacher_card = load_teacher(cfg.teacher)
        self.student, self.kept = pruned_student(self.teacher, cfg.g_width, cfg.probe_n)
        # The kept channels stay the pruning's: an earlier student matched those features.
        if cfg.student and state is None:
            start, _ = load_teacher(cfg.student)
            if start.arch() != self.student.arch():
                raise UserError(f"--student {cfg.student} is {start.arch()}, not the student {self.student.arch()} "
                                f"this teacher and --g-width make")
            self.student.load_state_dict(start.state_dict())
        self.teacher.to(device).requires_grad_(False)
        self.student.to(device).train()
        self.opt = torch.optim.Adam(self.student.parameters(), lr=cfg.lr, betas=cfg.betas)
        self.adversary = (Adversary(cfg.d_width, cfg.lr_d, self.teacher.n_classes, cfg.seed, device)
                          if cfg.adv_weight > 0 else None)
        self.rng = torch.Generator().manual_seed(cfg.seed)  # training latents: on the CPU, the same on any device
        self.step, self.images_seen, self.seconds = 0, 0, 0.0
        self.epochs_done = None  # no data: no epochs (evals.csv leaves the column empty)
        self.interrupted = 0
        self.sample_z = torch.from_numpy(latents(seed_range("faces", 64), self.teacher.z_dim)).to(device)
        self.n_classes = self.teacher.n_classes
        classes = sample_classes(64, self.n_classes)  # the trainer's grid: seed i gets class i % n
        self.sample_y = torch.from_numpy(classes).to(device) if classes is not None else None
        if state is not None:
            self.load_state_dict(state)

    def lr(self) -> float:
        return self.cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, self.images_seen / (self.cfg.kimg * 1000))))

    def train_step(self) -> dict:
        for group in self.opt.param_groups:
            group["lr"] = self.lr()
        z = torch.randn(self.cfg.batch_size, self.teacher.z_dim, generator=self.rng).to(self.device)
        y = (torch.randint(self.n_classes, (self.cfg.batch_size,), generator=self.rng).to(self.device)
             if self.n_classes else None)  # uniform, not the data's frequencies: every colour as often
        with torch.no_grad():
            *t_feats, t_img = features(self.teacher, z, y)
        *s_feats, s_img = features(self.student, z, y)
        pixels = (s_img - t_img).abs().mean()
        feats = sum((s - t[:, k]).abs().mean() for s, t, k in zip(s_feats, t_feats, self.kept)) / len(s_feats)
        loss = pixels + self.cfg.feature_weight * feats
        row = {"loss_pixels": pixels.item(), "loss_features": feats.item(), "loss_adv": 0.0, "loss_d": 0.0}
        if self.adversary is not None:
            adv, row["loss_d"] = self.adversary.step(s_img, t_img, y)
            row["loss_adv"] = adv.item()
            if self.images_seen >= self.cfg.d_warmup_kimg * 1000:
                loss = loss + self.cfg.adv_weight * adv
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.step += 1
        self.images_seen += self.cfg.batch_size
        return row

    def generator_for_export(self) -> nn.Module:
        """The student in eval mode with BatchNorm statistics measured for its weights (training
        used each batch's own)."""
        g = build_generator(self.student.arch()).to(self.device)
        g.load_state_dict(self.student.state_dict())
        return recalibrate_batchnorm(g, batches=8, batch_size=256).eval()

    def state_dict(self) -> dict:
        adversary = self.adversary.state_dict() if self.adversary is not None else {}
        return {"settings": dataclasses.asdict(self.cfg), "student": self.student.state_dict(),
                "opt": self.opt.state_dict(), "rng": self.rng.get_state(), "step": self.step,
                "images_seen": self.images_seen, "seconds": self.seconds, **adversary}

    def load_state_dict(self, state: dict) -> None:
        self.student.load_state_dict(state["student"])
        self.opt.load_state_dict(state["opt"])
        if self.adversary is not None:
            self.adversary.load_state_dict(state)
        self.rng.set_state(state["rng"])
        self.step, self.images_seen, self.seconds = state["step"], state["images_seen"], state["seconds"]

    def run_card(self) -> dict:
        t = self.teacher_card
        return {
            "arch": self.student.arch(), "weights": "distilled",
            "recipe": {"name": "distill", "description": f"{t['recipe'].get('name', '?')} teacher "
                       f"(width {t['arch']['g_width']}) distilled into width {self.cfg.g_width}: "
                       f"{'an earlier student' if self.cfg.student else 'pruned'} start, pixel and feature L1"
                       + (f", a hinge D on the teacher's faces (weight {self.cfg.adv_weight:g})" if self.adversary
                          else ", no discriminator") + ", no data", **dataclasses.asdict(self.cfg),
                       "z_dim": self.student.z_dim},
            "teacher": {k: t.get(k) for k in ("recipe", "epochs", "steps", "seconds", "hardware")} | {"path": self.cfg.teacher},
            # What the teacher learnt from: a conditional student draws the same classes, and the
            # class counts give each seed its class (core.seeds.seed_classes) as they do the teacher's.
            "classes": t.get("classes", []), "class_counts": t.get("class_counts", []), "dataset": t.get("dataset", {}),
            "epochs": None, "steps": self.step, "images_seen": self.images_seen, "seconds": round(self.seconds, 1),
            "seed": self.cfg.seed, "latent_rule": LATENT_RULE, "output_range": [-1, 1],
            "g_parameters": parameter_count(self.student), "hardware": device_name(self.device),
            "torch": torch.__version__,
        }


def load_teacher(path: str) -> tuple[nn.Module, dict]:
    """A run's Generator.pth (or its folder) or a shipped NAME.onnx: (G in eval mode, its card)."""
    return load_generator_source(path)


def save(run: Distillation, out: Path, losses: LossLog) -> nn.Module:
    """The run folder's files, as a training run writes them; returns the G written."""
    return write_outputs(run, out, losses, card=run.run_card(), title=f"distillation into width {run.cfg.g_width}")


def evaluate(run: Distillation, out: Path, data: str, g: nn.Module) -> None:
    card = run.teacher_card
    result = measure(g, data, device=str(run.device), classes=card.get("classes") or None,
                     weights=card.get("class_counts") or None)
    accuracy = f", class accuracy {result['class_accuracy']:.1%}" if "class_accuracy" in result else ""
    log.info("step %d (%d images): FID %.2f%s (%s)", run.step, run.images_seen, result["fid"], accuracy,
             result["protocol"])
    EvalLog(out / "evals.csv", card.get("classes") or []).append(run, result)


def train(run: Distillation, out: Path, max_minutes: float, data: str | None, eval_every_kimg: float,
          log_every: int = 50, save_every_s: float = 600.0) -> None:
    """Until --kimg images (or --max-minutes): log, save every 10 minutes, evaluate at the marks."""
    losses = LossLog(out / "losses.csv", run.step, fields=LOSS_FIELDS,
                     curves=(("loss_pixels", "pixel L1"), ("loss_features", "feature L1"))
                     + ((("loss_adv", "student's D loss"), ("loss_d", "D loss")) if run.adversary else ()))
    total, start, last_save = int(run.cfg.kimg * 1000), time.time(), time.time()
    seen0, trained_s = run.images_seen, 0.0  # this session's images and seconds, for images/s
    every = int(eval_every_kimg * 1000) if data else 0
    while run.images_seen < total and not run.interrupted:
        before, tick = run.images_seen, time.time()
        row = run.train_step()
        now = time.time()
        run.seconds += now - tick  # training time only: saves and evaluations are not counted
        trained_s += now - tick
        if run.step % log_every == 0:
            speed = (run.images_seen - seen0) / max(trained_s, 1e-9)
            losses.append({"step": run.step, "images_seen": run.images_seen, **row, "lr": run.lr(), "images_per_s": speed})
            adv = f", D {row['loss_d']:.3f}, student's D loss {row['loss_adv']:.3f}" if run.adversary else ""
            log.info("step %d, %d images: pixel L1 %.4f, feature L1 %.4f%s, %.0f images/s", run.step,
                     run.images_seen, row["loss_pixels"], row["loss_features"], adv, speed)
        if every and run.images_seen // every > before // every and run.images_seen < total:
            evaluate(run, out, data, save(run, out, losses))  # saved first: the evaluation takes minutes
            last_save = time.time()
        elif now - last_save > save_every_s:
            save(run, out, losses)
            last_save = time.time()
        if max_minutes and now - start > max_minutes * 60:
            break
    g = save(run, out, losses)
    if data and run.images_seen >= total:  # the end is always measured, on a mark or not
        evaluate(run, out, data, g)
