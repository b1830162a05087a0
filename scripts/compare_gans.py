"""Train the original report's GAN family side by side on the same budget of real images, and report it.

    python -m scripts.compare_gans --data faces.zip                      # train; run it again to continue
    python -m scripts.compare_gans --data faces.zip --kimg 500 --stage-kimg 100 --only wgan,wgan-gp
    python -m scripts.compare_gans --status                              # where each entry stands, time left
    python -m scripts.compare_gans --report                              # figure, table, grid, evaluations
    python -m scripts.compare_gans --list                                # the entries

Any other flag goes to every new entry's `trainer.train` after the entry's own (`--eval-n 1000`,
`--batch-size 64`, ...).

Every entry trains with `python -m trainer.train` in its own run folder under --out, in stages:
all entries to 100k real images, then all to 200k, and so on (images shown to D, counted as
StyleGAN counts kimg), so a comparison stopped at any time holds every entry at about the same
budget. Each stage ends with an evaluation (FID-5k, KID, precision and recall, near-duplicates).
Ctrl-C or SIGTERM stops the entry in training after its current step, saved; the same command
continues it. An entry that stops with NaN or infinite losses, or with a D saturated for good, is a
result: it is recorded (compare.json in its folder) and the others go on.
"""
from __future__ import annotations

import argparse
import json
import math
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError, command

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "models" / "compare"
PAGE = ROOT / "docs" / "which-gan.md"


@dataclass(frozen=True)
class Entry:
    name: str
    recipe: str
    flags: tuple[str, ...]
    what: str


W64 = ("--g-width", "64")  # the DCGAN-family generators at width 64 (G 512-256-128-64), D as the recipe's
# The ResNets at width 16 (G and D 256-128-64-32-16): one real image then costs about what it costs
# the DCGAN family at width 64 (1.8 against 2.3 GFLOP, bench.train_speed); at the recipe's width 32 it is 7.2.
W16 = ("--g-width", "16", "--d-width", "16")
ENTRIES = (
    Entry("report-dcgan", "seed-dcgan", W64, "the report's DCGAN exactly (Adam 2e-3, noisy labels, its G loss)"),
    Entry("dcgan-lr2e-4", "seed-dcgan", W64 + ("--lr", "2e-4"), "the same with DCGAN's usual learning rate 2e-4"),
    Entry("wgan", "wgan", W64, "WGAN: weight clipping, RMSprop 5e-5, 5 critic steps"),
    Entry("wgan-gp", "wgan-gp", W64, "WGAN-GP: gradient penalty 10, layer-norm critic, 5 critic steps"),
    Entry("report-cgan", "cgan", W64, "the report's conditional GAN (hair colour, three pairs)"),
    Entry("best", "best", W64, "this project's recipe: spectral-norm hinge D, two time-scales, EMA"),
    Entry("sngan", "sngan", W16, "ResNet G and D at width 16, spectral norm, hinge, DiffAugment, EMA"),
    Entry("sngan-attention", "sngan", W16 + ("--attention", "true"), "sngan with self-attention at 32x32 (SAGAN)"),
)
BY_NAME = {e.name: e for e in ENTRIES}


# How a recipe can fail, and what the trainer's error says then: a result to record, not a crash.
FAILURES = {"non-finite loss": "non-finite", "D saturated": "D saturated"}


def read_json(path: Path) -> dict:
    """A JSON file as a dict; {} when it is missing or unreadable (a run that has not saved yet)."""
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return {}


def images_seen(run: Path) -> int:
    """Real images the entry's last saved state has seen (its generator.json, written with every save)."""
    return int(read_json(run / "generator.json").get("images_seen") or 0)


def failure(run: Path) -> dict:
    return read_json(run / "compare.json").get("failed") or {}


class Child:
    """The training process; a SIGTERM to this command reaches it too (Ctrl-C reaches both anyway)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.stopped = 0
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._forward)

    def _forward(self, signum, frame) -> None:
        self.stopped = signum
        if self.proc and self.proc.poll() is None and signum == signal.SIGTERM:
            self.proc.send_signal(signum)

    def run(self, cmd: list[str], log: Path) -> int:
        with open(log, "a") as f:
            f.write("$ " + " ".join(cmd) + "\n")
            f.flush()
            self.proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
            rc = self.proc.wait()
        self.proc = None
        return rc


def train_stage(entry: Entry, run: Path, data: str, target_kimg: float, stage_kimg: float, device: str,
                child: Child, extra: list[str]) -> str:
    """Train one entry up to target_kimg (fresh or resumed); returns what happened, for the log."""
    if (run / "checkpoint.pt").is_file():
        cmd = ["--resume", str(run), "--kimg", f"{target_kimg:g}"]
    else:
        cmd = ["--data", data, "--recipe", entry.recipe, *entry.flags, "--out", str(run), "--kimg", f"{target_kimg:g}",
               "--eval-every-kimg", f"{stage_kimg:g}", "--epochs", "1000000", "--seed", "0", "--device", device, *extra]
    run.mkdir(parents=True, exist_ok=True)
    log = run / "train.log"
    rc = child.run([sys.executable, "-m", "trainer.train", *cmd, "--quiet"], log)
    if rc in (130, 143) or child.stopped:
        raise KeyboardInterrupt
    if rc != 0:
        last = [line for line in log.read_text().splitlines() if line.startswith("error:")][-1:] or [f"exit code {rc}"]
        kind = next((k for k, mark in FAILURES.items() if mark in last[0]), None)
        if kind is None:
            raise UserError(f"{entry.name}: {last[0].removeprefix('error: ')} (log: {log})")
        (run / "compare.json").write_text(json.dumps(
            {"failed": {"why": last[0].removeprefix("error: "), "kind": kind, "images_seen": images_seen(run)}},
            indent=2) + "\n")
        return f"{kind}: {last[0]}"
    return f"{images_seen(run):,} images"


def train_all(a: argparse.Namespace, entries: list[Entry]) -> int:
    if not Path(a.data).exists():
        raise UserError(f"no data at {a.data}: give --data a folder or .zip of face images (docs/data.md)")
    child = Child()
    stages = [a.stage_kimg * (i + 1) for i in range(math.ceil(a.kimg / a.stage_kimg))]
    for i, target in enumerate(stages):
        target = min(target, a.kimg)
        for entry in entries:
            run = a.out / entry.name
            if failure(run) or images_seen(run) >= target * 1000:
                continue
            print(f"stage {i + 1}/{len(stages)}: {entry.name} to {target:g}k images "
                  f"(now {images_seen(run) / 1000:g}k; log {run / 'train.log'})", flush=True)
            try:
                print(f"  {entry.name}: {train_stage(entry, run, a.data, target, a.stage_kimg, a.device, child, a.extra)}",
                      flush=True)
            except KeyboardInterrupt:
                print(f"stopped during {entry.name}; run the same command to continue")
                return 128 + (child.stopped or signal.SIGINT)
    print(f"all entries at {a.kimg:g}k images (or stopped); next: python -m scripts.compare_gans --report --out {a.out}")
    return 0


def status(a: argparse.Namespace, entries: list[Entry]) -> int:
    """One line per entry: images seen of the budget, its last evaluation, its usual speed, and the
    hours of training it has left at that speed (evaluations come on top, a few minutes each)."""
    from scripts.compare_report import rows_of, typical_speed

    left_s, unknown = 0.0, []
    for e in entries:
        run = a.out / e.name
        seen, rows, failed = images_seen(run), rows_of(run / "evals.csv"), failure(run)
        speed = typical_speed(run / "losses.csv")
        last = f"FID-5k {rows[-1]['fid']:.2f} at {rows[-1]['images_seen'] / 1000:.0f}k" if rows else "no evaluation yet"
        if failed:
            left = f"stopped for good: {failed.get('kind', 'failed')} at {failed.get('images_seen', 0) / 1000:.0f}k"
        elif seen >= a.kimg * 1000:
            left = "done"
        elif speed:
            entry_s = (a.kimg * 1000 - seen) / speed
            left_s += entry_s
            left = f"{speed:.0f} images/s, {entry_s / 3600:.1f} h left"
        else:
            unknown.append(e.name)
            left = "not started" if not run.is_dir() else "no speed logged yet"
        print(f"{e.name:16} {seen / 1000:6.0f}k of {a.kimg:g}k  {last:28} {left}")
    more = f" (and {', '.join(unknown)}, not timed yet)" if unknown else ""
    print(f"training left: about {left_s / 3600:.1f} h at each entry's own speed{more}, plus the evaluations")
    return 0


@command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.compare_gans", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="the training images (folder or .zip), the same for every entry")
    p.add_argument("--out", type=Path, default=Path("runs/compare"), help="run folders (default runs/compare)")
    p.add_argument("--kimg", type=float, default=500, help="thousands of real images per entry (default 500)")
    p.add_argument("--stage-kimg", type=float, default=100, help="evaluate and move to the next entry every this "
                                                                 "many thousand images (default 100)")
    p.add_argument("--only", help="comma list of entries (default: all; --list shows them)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--report", action="store_true", help="write the figure, grid and table from the runs so far")
    p.add_argument("--docs", type=Path, default=DOCS, help=f"where --report writes (default {DOCS.relative_to(ROOT)})")
    p.add_argument("--page", type=Path, default=PAGE, help="the page whose 'compare' block gets the table")
    p.add_argument("--list", action="store_true", help="list the entries and exit")
    p.add_argument("--status", action="store_true", help="where each entry stands under --out, and the hours left")
    a, a.extra = p.parse_known_args(argv)
    names = a.only.split(",") if a.only else list(BY_NAME)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise UserError(f"unknown entry {unknown[0]!r}; entries: {', '.join(BY_NAME)}")
    entries = [BY_NAME[n] for n in names]
    if a.list:
        for e in entries:
            print(f"{e.name:16} {' '.join(('--recipe', e.recipe) + e.flags):60} {e.what}")
        return 0
    if a.status:
        return status(a, entries)
    if a.report:
        from scripts.compare_report import report

        return report(a, entries)
    if not a.data:
        p.error("--data is required to train (or --report, --status, --list)")
    if a.kimg <= 0 or a.stage_kimg <= 0:
        p.error("--kimg and --stage-kimg must be positive")
    return train_all(a, entries)


if __name__ == "__main__":
    sys.exit(main())
