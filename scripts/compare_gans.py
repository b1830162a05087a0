"""Train the original report's GAN family side by side on the same budget of real images, and report it.

    python -m scripts.compare_gans --data faces.zip                      # train; run it again to continue
    python -m scripts.compare_gans --data faces.zip --kimg 500 --stage-kimg 100 --only wgan,wgan-gp
    python -m scripts.compare_gans --report                              # figure, table, grid, evaluations
    python -m scripts.compare_gans --list                                # the entries

Any other flag goes to every new entry's `trainer.train` after the entry's own (`--eval-n 1000`,
`--batch-size 64`, ...).

Every entry trains with `python -m trainer.train` in its own run folder under --out, in stages:
all entries to 100k real images, then all to 200k, and so on (images shown to D, counted as
StyleGAN counts kimg), so a comparison stopped at any time holds every entry at about the same
budget. Each stage ends with an evaluation (FID-5k, KID, precision and recall, near-duplicates).
Ctrl-C or SIGTERM stops the entry in training after its current step, saved; the same command
continues it. An entry that stops with NaN or infinite losses is a result: it is recorded
(compare.json in its folder) and the others go on.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError, command

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "models" / "compare"
PAGE = ROOT / "docs" / "which-gan.md"
GRID_SEEDS = range(8)
FIGURE = "\n\n![FID-5k against real images seen, one line per entry]({docs}/fid.png)"
GRID = "\n\n![Seeds 0-7 of every entry, one row each]({docs}/grid.png)"
FILES = "\n\nThe evaluation files of every entry are in [`docs/models/compare/`]({docs}/table.md)."
COLLAPSE_SHARE = 0.35  # near-duplicates among 1,000 faces: real images about 1 %, collapsed runs 49-75 %


@dataclass(frozen=True)
class Entry:
    name: str
    recipe: str
    flags: tuple[str, ...]
    what: str


W64 = ("--g-width", "64")  # the DCGAN-family generators at width 64 (G 512-256-128-64), D as the recipe's
ENTRIES = (
    Entry("report-dcgan", "seed-dcgan", W64, "the report's DCGAN exactly (Adam 2e-3, noisy labels, its G loss)"),
    Entry("dcgan-lr2e-4", "seed-dcgan", W64 + ("--lr", "2e-4"), "the same with DCGAN's usual learning rate 2e-4"),
    Entry("wgan", "wgan", W64, "WGAN: weight clipping, RMSprop 5e-5, 5 critic steps"),
    Entry("wgan-gp", "wgan-gp", W64, "WGAN-GP: gradient penalty 10, layer-norm critic, 5 critic steps"),
    Entry("report-cgan", "cgan", W64, "the report's conditional GAN (hair colour, three pairs)"),
    Entry("best", "best", W64, "this project's recipe: spectral-norm hinge D, two time-scales, EMA"),
    Entry("sngan", "sngan", (), "ResNet G and D with spectral norm, hinge, DiffAugment, EMA"),
    Entry("sngan-attention", "sngan", ("--attention", "true"), "sngan with self-attention at 32x32 (SAGAN)"),
)
BY_NAME = {e.name: e for e in ENTRIES}


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return {}


def images_seen(run: Path) -> int:
    """Real images the entry's last saved state has seen (its generator.json, written with every save)."""
    return int(_json(run / "generator.json").get("images_seen") or 0)


def failure(run: Path) -> dict:
    return _json(run / "compare.json").get("failed") or {}


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
        if "non-finite" not in last[0]:
            raise UserError(f"{entry.name}: {last[0].removeprefix('error: ')} (log: {log})")
        (run / "compare.json").write_text(json.dumps(
            {"failed": {"why": last[0].removeprefix("error: "), "images_seen": images_seen(run)}}, indent=2) + "\n")
        return f"diverged: {last[0]}"
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


# ----------------------------------------------------------------------------- the report

def rows_of(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) if v not in ("", None) else None for k, v in r.items()} for r in csv.DictReader(f)]


def verdict(rows: list[dict], failed: dict) -> str:
    if failed:
        return f"diverged at {failed.get('images_seen', 0) / 1000:.0f}k (non-finite loss)"
    if not rows:
        return "not measured yet"
    last = rows[-1]
    if last.get("near_duplicates") is not None and last["near_duplicates"] > COLLAPSE_SHARE * 1000:
        return f"collapsed ({last['near_duplicates']:.0f} near-duplicates of 1,000)"
    best = min(rows, key=lambda r: r["fid"])
    if last["fid"] > 1.5 * best["fid"]:
        return f"got worse (FID {best['fid']:.1f} at {best['images_seen'] / 1000:.0f}k)"
    return "stable"


def typical_speed(losses_csv: Path) -> float | None:
    """The median of the images/s the run logged: a run that was paused, resumed or shared its CPU
    for a while keeps its usual speed, which its total seconds would not show."""
    speeds = sorted(r["images_per_s"] for r in rows_of(losses_csv) if r.get("images_per_s"))
    return speeds[len(speeds) // 2] if speeds else None


def summary(out: Path, entries: list[Entry]) -> list[dict]:
    table = []
    for e in entries:
        run = out / e.name
        rows, card = rows_of(run / "evals.csv"), _json(run / "generator.json")
        last = rows[-1] if rows else {}
        seconds = card.get("seconds") or 0.0
        table.append({"name": e.name, "recipe": e.recipe, "what": e.what, "rows": rows,
                      "images_seen": int(card.get("images_seen") or 0), "seconds": seconds,
                      "images_per_s": typical_speed(run / "losses.csv") or
                                      ((card.get("images_seen") or 0) / seconds if seconds else None),
                      "hardware": card.get("hardware"), "precision": "bf16" if (card.get("speed") or {}).get("bf16") else "fp32",
                      "last": last, "verdict": verdict(rows, failure(run))})
    return table


def _f(v: float | None, fmt: str, scale: float = 1.0) -> str:
    return "-" if v is None else format(v * scale, fmt)


def _bold(text: str) -> str:
    return text if text == "-" else f"**{text}**"


def markdown(table: list[dict]) -> str:
    head = ("| entry | what | images seen | FID-5k | KID x10^3 | precision / recall | near-duplicates of 1,000 | "
            "images/s | minutes | stable? |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    lines = [head]
    for t in sorted(table, key=lambda t: (t["last"].get("fid") is None, t["last"].get("fid") or 0)):
        last = t["last"]
        lines.append(f"| `{t['name']}` | {t['what']} | {t['images_seen'] / 1000:,.0f}k | {_bold(_f(last.get('fid'), '.2f'))} | "
                     f"{_f(last.get('kid'), '.1f', 1000)} | {_f(last.get('precision'), '.3f')} / {_f(last.get('recall'), '.3f')} | "
                     f"{_f(last.get('near_duplicates'), '.0f')} | {_f(t['images_per_s'], '.1f')} | "
                     f"{t['seconds'] / 60:.0f} | {t['verdict']} |")
    machines = sorted({f"{t['hardware']} ({t['precision']})" for t in table if t["hardware"]})
    return "\n".join(lines) + f"\n\nTrained on: {', '.join(machines) or '-'}."


def curve_figure(table: list[dict], path: Path, budget_kimg: float) -> None:
    """FID-5k against real images seen, one line per entry, on the whole budget's axis."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    from core.figures import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for t in table:
        pts = [(r["images_seen"] / 1000, r["fid"]) for r in t["rows"] if r.get("fid") is not None]
        if pts:
            line, = ax.plot(*zip(*pts), marker="o", ms=3, label=t["name"])
            if t["verdict"] != "stable":
                ax.plot(*pts[-1], marker="x", ms=9, color=line.get_color())
    ax.set_xlabel("real images shown to D (thousands)")
    ax.set_ylabel("FID-5k (lower is better)")
    # the whole budget from 0 on x, so the first stages sit where they belong instead of filling the plot
    seen = [r["images_seen"] / 1000 for t in table for r in t["rows"]]
    ax.set_xlim(0, 1.03 * max([budget_kimg, *seen]))
    ax.set_yscale("log")
    fids = [r["fid"] for t in table for r in t["rows"] if r.get("fid") is not None]
    if fids:  # padded so that a labelled tick (1, 2, 3, 5 x 10^k) always falls inside
        ax.set_ylim(min(fids) / 1.25, max(fids) * 1.25)
    ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 3, 5)))
    ax.yaxis.set_major_formatter(ScalarFormatter())  # 300, not 3 x 10^2
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_title("The report's GAN family at the same budget (x: not stable)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, make_parents=True)


def grid_figure(out: Path, table: list[dict], path: Path) -> None:
    """One row per entry, seeds 0-7 (a conditional entry: each seed's own class), labelled."""
    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    from core.images import make_grid, save_png, to_uint8
    from core.seeds import latents, seed_classes
    from networks.files import load_generator

    rows, names = [], []
    for t in table:
        if not (out / t["name"] / "Generator.pth").is_file():
            continue
        g, card = load_generator(out / t["name"])
        z = torch.from_numpy(latents(GRID_SEEDS, g.z_dim))
        y = (torch.from_numpy(seed_classes(GRID_SEEDS, g.z_dim, card.get("class_counts") or [1] * g.n_classes))
             if g.n_classes else None)
        with torch.no_grad():
            rows.append(to_uint8(g(z, y).numpy()))
        names.append(f"{t['name']} ({t['images_seen'] / 1000:.0f}k)")
    if not rows:
        return
    grid = make_grid(np.concatenate(rows), cols=len(GRID_SEEDS))
    label_w = 170
    sheet = Image.new("RGB", (grid.shape[1] + label_w, grid.shape[0]), "white")
    sheet.paste(Image.fromarray(grid), (label_w, 0))
    draw = ImageDraw.Draw(sheet)
    step = grid.shape[0] / len(rows)
    for i, name in enumerate(names):
        draw.text((4, int(i * step + step / 2 - 6)), name, fill="black")
    save_png(sheet, path)


def report(a: argparse.Namespace, entries: list[Entry]) -> int:
    from scripts.doc_blocks import replace_block

    table = summary(a.out, entries)
    if not any(t["rows"] for t in table):
        raise UserError(f"no evaluations under {a.out} yet: train first (python -m scripts.compare_gans --data ...)")
    a.docs.mkdir(parents=True, exist_ok=True)
    for t in table:
        src = a.out / t["name"] / "evals.csv"
        if src.is_file():
            shutil.copyfile(src, a.docs / f"{t['name']}-evals.csv")
        if failure(a.out / t["name"]):
            shutil.copyfile(a.out / t["name"] / "compare.json", a.docs / f"{t['name']}-failure.json")
    curve_figure(table, a.docs / "fid.png", a.kimg)
    grid_figure(a.out, table, a.docs / "grid.png")
    text = markdown(table)
    (a.docs / "table.md").write_text(text + "\n")
    if a.page.is_file():
        # the page links the figures only once they exist, so a clone never shows a broken picture
        rel = os.path.relpath(a.docs, a.page.parent)
        links = FIGURE + (GRID if (a.docs / "grid.png").is_file() else "") + FILES
        replace_block(a.page, "compare", text + links.format(docs=rel))
    print(text)
    print(f"wrote {a.docs}/: fid.png, grid.png, table.md and each entry's evals" +
          (f"; the table in {a.page}" if a.page.is_file() else ""))
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
    a, a.extra = p.parse_known_args(argv)
    names = a.only.split(",") if a.only else list(BY_NAME)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise UserError(f"unknown entry {unknown[0]!r}; entries: {', '.join(BY_NAME)}")
    entries = [BY_NAME[n] for n in names]
    if a.list:
        for e in entries:
            print(f"{e.name:16} --recipe {e.recipe} {' '.join(e.flags):28} {e.what}")
        return 0
    if a.report:
        return report(a, entries)
    if not a.data:
        p.error("--data is required to train (or --report, --list)")
    if a.kimg <= 0 or a.stage_kimg <= 0:
        p.error("--kimg and --stage-kimg must be positive")
    return train_all(a, entries)


if __name__ == "__main__":
    sys.exit(main())
