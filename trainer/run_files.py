"""The files of a run folder: checkpoint.pt, Generator.pth, generator.json (the run card), the loss
log and plot (losses.csv, losses.png), the evaluations (evals.csv), sample grids; and the checks
that the folder can take them. A distillation writes the same files (trainer/distill/run.py)."""
from __future__ import annotations

import csv
import errno
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.dataset import data_record
from core.errors import UserError
from core.figures import pyplot, save_figure
from core.images import make_grid, save_png, to_uint8
from core.seeds import LATENT_RULE
from core.system import cpu_name
from networks.files import load_torch, save_json, save_torch
from trainer.config import recipe_changes

LOSS_FIELDS = ["step", "epoch", "loss_d", "loss_g", "d_real", "d_fake", "d_acc", "images_per_s"]
STALE_TEMP_S = 60  # a temporary file this old in a run folder is a leftover of a killed write


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def check_writable(out: Path, need_bytes: int) -> None:
    """Fail at start, not after an hour, when the run folder cannot take the files."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        # A unique probe name: under torchrun every process checks the same folder at once.
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"cannot write to output folder {out}: {exc.strerror or exc}") from None
    free = shutil.disk_usage(out).free
    if free < need_bytes:
        raise UserError(f"not enough free disk space in {out}: {free / 1e6:.0f} MB free, "
                        f"checkpoints need about {need_bytes / 1e6:.0f} MB")


def remove_stale_temporaries(out: Path, older_than_s: float = STALE_TEMP_S) -> list[Path]:
    """Temporary files a killed write left in the run folder (atomic_write's `.NAME.XXXX.tmp`)."""
    removed, now = [], time.time()
    for folder in (out, out / "samples"):
        for p in folder.glob(".*.tmp") if folder.is_dir() else ():
            try:
                if now - p.stat().st_mtime > older_than_s:
                    p.unlink()
                    removed.append(p)
            except OSError:
                pass
    return removed


def job_folder(resume: Path | None, out: Path) -> tuple[Path, dict | None]:
    """A side job's run folder (distillation, encoder) and its checkpoint state: `resume` loads it; a
    new run refuses a folder that already holds one."""
    if resume:
        return resume, load_torch(resume / "checkpoint.pt")
    if (out / "checkpoint.pt").exists():
        raise UserError(f"{out} already holds a run; use --resume {out} or another --out")
    return out, None


def ready_folder(out: Path, log) -> None:
    """A run folder made writable (with room for a checkpoint) and cleared of interrupted writes."""
    check_writable(out, need_bytes=64 * 2**20)
    for p in remove_stale_temporaries(out):
        log.info("removed %s, left by an interrupted write", p)


def output_bytes(n_g: int, n_d: int, ema: bool, resume: bool) -> int:
    """Free disk the outputs need: a fresh run writes every file; a resumed one already holds them,
    and needs room for the temporary copy of the largest (checkpoint.pt) during its atomic rename."""
    checkpoint = 4 * (n_g * (3 + (1 if ema else 0)) + n_d * 3)  # G, D, EMA and Adam's two moments, float32
    generator = 4 * n_g
    return int(1.1 * (checkpoint if resume else checkpoint + generator)) + 2 * 2**20  # + samples and logs


def run_card(run) -> dict:
    """generator.json of a training run (a trainer.run_state.RunState): everything needed to rebuild G
    and say how it was made."""
    recipe = run.recipe.to_dict()
    return {
        "arch": run.g.arch(), "recipe": recipe, "weights": "ema" if run.ema else "raw",
        "recipe_changes": recipe_changes(recipe),  # what the export's description adds
        "classes": run.class_names, "class_counts": run.class_counts, "dataset": data_record(run.data_info),
        "epochs": round(run.epochs_done, 3), "steps": run.step, "images_seen": run.images_seen,
        "seconds": round(run.seconds, 1), "seed": run.options.seed, "latent_rule": LATENT_RULE,
        "output_range": [-1, 1], "g_parameters": parameter_count(run.g), "hardware": device_name(run.device),
        "speed": run.speed_flags, "precision": run.precision_note, "torch": torch.__version__,
        "best_fid": run.best_fid if math.isfinite(run.best_fid) else None,
        **({"finetuned_from": str(run.options.finetune)} if run.options.finetune else {}),
    }


def write_outputs(run, out: Path, losses: "LossLog | None", card: dict | None = None,
                  title: str | None = None) -> nn.Module:
    """checkpoint.pt, Generator.pth, generator.json (`card`, by default a training run's run_card),
    a sample grid and the loss plot (unless losses is None, titled `title`, by default the recipe's
    name); returns the G written. A full or failing disk stops the run with one line; each file is
    written atomically, so the last complete one of each survives."""
    try:
        save_torch(run.state_dict(), out / "checkpoint.pt")
        g = run.generator_for_export()
        save_torch({k: v.detach().cpu() for k, v in g.state_dict().items()}, out / "Generator.pth")
        save_json(card or run_card(run), out / "generator.json")
        save_samples(g, run.sample_z, out / "samples" / f"step_{run.step:07d}.png", run.sample_y)
        if losses is not None:
            losses.plot(out / "losses.png", title or run.recipe.name)
        return g
    except OSError as exc:
        why = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        from trainer.run_state import TrainingError

        raise TrainingError(f"could not write the outputs of step {run.step} to {out}: {why} "
                            f"({Path(exc.filename).name if exc.filename else 'a file'}); the last complete "
                            f"checkpoint there is kept: free space, then --resume {out}") from None


class LossLog:
    """losses.csv, one row every --log-every steps; a resumed run drops rows logged after its
    checkpoint (a kill -9 may leave some)."""

    def __init__(self, path: Path, up_to_step: int, fields: list[str] = LOSS_FIELDS,
                 curves: tuple[tuple[str, str], ...] = (("loss_d", "D loss"), ("loss_g", "G loss"))):
        self.path, self.fields, self.curves = path, fields, curves
        rows = []
        if path.exists():
            with open(path, newline="") as f:
                rows = [row for row in csv.DictReader(f) if int(row["step"]) <= up_to_step]
        # Logs from before a column existed read it as NaN (and write it empty).
        self.history = [{k: float(v) if v not in (None, "") else math.nan for k, v in row.items() if k in fields}
                        for row in rows]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, restval="", extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    def append(self, row: dict) -> None:
        self.history.append(row)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields).writerow(row)

    def plot(self, path: Path, title: str) -> None:
        if not self.history:
            return
        plt = pyplot()
        steps = [h["step"] for h in self.history]
        fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
        for key, label in self.curves:
            ax.plot(steps, [h[key] for h in self.history], label=label, lw=0.8)
        ax.set_xlabel("generator step")
        ax.set_ylabel("loss")
        ax.set_title(f"{title}: losses")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        save_figure(fig, path)


@torch.no_grad()
def save_samples(g: nn.Module, z: torch.Tensor, path: Path, y: torch.Tensor | None = None) -> None:
    """An 8-column grid of G's faces for fixed latents (the same faces every time; for a conditional
    G, seed i with class i % n_classes, so each column holds one class when n divides 8)."""
    from PIL import Image

    was_training = g.training
    g.eval()
    imgs = to_uint8(g(z, y).float().cpu().numpy())
    g.train(was_training)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(Image.fromarray(make_grid(imgs, cols=8)), path)


def parameter_count(module: nn.Module) -> int:
    return int(sum(np.prod(p.shape) for p in module.parameters()))


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

    def append(self, run, result: dict) -> None:
        import csv

        rows = []
        if self.path.is_file():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) < run.step]  # a kill -9 may leave later ones
        per_class = result.get("per_class", {})
        row = {"epoch": "" if run.epochs_done is None else round(run.epochs_done, 3), "step": run.step,
               "images_seen": run.images_seen, "seconds": round(run.seconds, 1),
               "images_per_s": round(run.images_seen / run.seconds, 1) if run.seconds and run.images_seen else "",
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
