"""The report of scripts/compare_gans.py from its run folders: the table, the figure of FID-5k
against images seen, the grid of seeds 0-7 per entry, and the table's block on docs/which-gan.md.

    python -m scripts.compare_gans --report                 # the command; report(args, entries) here
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
from pathlib import Path

from core.errors import UserError
from scripts.compare_gans import Entry, failure, read_json

GRID_SEEDS = range(8)
FIGURE = "\n\n![FID-5k against real images seen, one line per entry]({docs}/fid.png)"
GRID = "\n\n![Seeds 0-7 of every entry, one row each]({docs}/grid.png)"
FILES = "\n\nThe evaluation files of every entry are in [`docs/models/compare/`]({docs}/table.md)."
FACTS = ("images_seen", "seconds", "images_per_s", "hardware", "precision")  # what NAME-run.json keeps
COLLAPSE_SHARE = 0.35  # near-duplicates among 1,000 faces: real images about 1 %, collapsed runs 49-75 %


def rows_of(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) if v not in ("", None) else None for k, v in r.items()} for r in csv.DictReader(f)]


def verdict(rows: list[dict], failed: dict) -> str:
    if failed:
        kind = failed.get("kind", "non-finite loss")  # files from before "kind" recorded only these
        at = failed.get("images_seen", 0) / 1000
        return f"stopped at {at:.1f}k: {kind}" if kind == "D saturated" else f"diverged at {at:.0f}k ({kind})"
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


def run_facts(run: Path) -> dict:
    """What the table says of a run folder beside its evaluations: images, seconds, speed, machine."""
    card = read_json(run / "generator.json")
    if not card:
        return {}
    seen, seconds = int(card.get("images_seen") or 0), card.get("seconds") or 0.0
    return {"images_seen": seen, "seconds": seconds,
            "images_per_s": typical_speed(run / "losses.csv") or (seen / seconds if seconds else None),
            "hardware": card.get("hardware"), "precision": "bf16" if (card.get("speed") or {}).get("bf16") else "fp32"}


def summary(out: Path, entries: list[Entry], docs: Path) -> list[dict]:
    """One dict per entry, from its run folder under `out`, else from what an earlier report kept in
    `docs` (a clone, or a machine that trained only some entries, keeps every measured row). A run
    folder that has fewer evaluations than the kept ones (an entry started again from zero elsewhere)
    does not replace them until it catches up; `from_run` says which source a row came from."""
    table = []
    for e in entries:
        run = out / e.name
        rows, failed = rows_of(run / "evals.csv"), failure(run)
        kept = rows_of(docs / f"{e.name}-evals.csv")
        from_run = run.is_dir() and (bool(failed) or len(rows) >= len(kept))
        if from_run:
            facts = run_facts(run)
        else:
            facts, rows = read_json(docs / f"{e.name}-run.json"), kept
            failed = read_json(docs / f"{e.name}-failure.json").get("failed")
        table.append({"name": e.name, "recipe": e.recipe, "what": e.what, "rows": rows,
                      "images_seen": int(facts.get("images_seen") or 0), "seconds": facts.get("seconds") or 0.0,
                      "images_per_s": facts.get("images_per_s"), "hardware": facts.get("hardware"),
                      "precision": facts.get("precision", "fp32"), "from_run": from_run,
                      "keep_facts": from_run and bool(facts),
                      "last": rows[-1] if rows else {}, "verdict": verdict(rows, failed or {})})
    return table


def _f(v: float | None, fmt: str, scale: float = 1.0) -> str:
    return "-" if v is None else format(v * scale, fmt)


def _bold(text: str) -> str:
    return text if text == "-" else f"**{text}**"


def _arithmetic(t: dict) -> str:
    # Rows trained in bf16 say so beside their speed: a comparison may span CPUs with and without it.
    return " (bf16)" if t["images_per_s"] and t["precision"] == "bf16" else ""


def markdown(table: list[dict]) -> str:
    head = ("| entry | what | images seen | FID-5k | KID x10^3 | precision / recall | near-duplicates of 1,000 | "
            "images/s | minutes | stable? |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    lines = [head]
    for t in sorted(table, key=lambda t: (t["last"].get("fid") is None, t["last"].get("fid") or 0)):
        last = t["last"]
        # the row speaks of its last evaluation: a run that trained on since then (stopped mid-stage)
        # shows the images and minutes of that evaluation, not its FID beside later images
        seen, seconds = last.get("images_seen") or t["images_seen"], last.get("seconds") or t["seconds"]
        lines.append(f"| `{t['name']}` | {t['what']} | {seen / 1000:,.0f}k | {_bold(_f(last.get('fid'), '.2f'))} | "
                     f"{_f(last.get('kid'), '.1f', 1000)} | {_f(last.get('precision'), '.3f')} / {_f(last.get('recall'), '.3f')} | "
                     f"{_f(last.get('near_duplicates'), '.0f')} | {_f(t['images_per_s'], '.1f')}{_arithmetic(t)} | "
                     f"{seconds / 60:.0f} | {t['verdict']} |")
    machines = sorted({f"{t['hardware']} ({t['precision']})" for t in table if t["hardware"]})
    return "\n".join(lines) + f"\n\nTrained on: {', '.join(machines) or '-'}."


def curve_figure(table: list[dict], path: Path, budget_kimg: float) -> None:
    """FID-5k against real images seen, one line per entry, on the whole budget's axis."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    from core.figures import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    every = []  # (thousands of images, FID) of all entries, for the axes' limits
    for t in table:
        pts = [(r["images_seen"] / 1000, r["fid"]) for r in t["rows"] if r.get("fid") is not None]
        if pts:
            every += pts
            line, = ax.plot(*zip(*pts), marker="o", ms=3, label=t["name"])
            if t["verdict"] != "stable":
                ax.plot(*pts[-1], marker="x", ms=9, color=line.get_color())
    ax.set_xlabel("real images shown to D (thousands)")
    ax.set_ylabel("FID-5k (lower is better)")
    # the whole budget from 0 on x, so the first stages sit where they belong instead of filling the plot
    ax.set_xlim(0, 1.03 * max([budget_kimg, *(x for x, _ in every)]))
    ax.set_yscale("log")
    if every:  # padded so that a labelled tick (1, 2, 3, 5 x 10^k) always falls inside
        fids = [fid for _, fid in every]
        ax.set_ylim(min(fids) / 1.25, max(fids) * 1.25)
    ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 3, 5)))
    ax.yaxis.set_major_formatter(ScalarFormatter())  # 300, not 3 x 10^2
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_title("The report's GAN family at the same budget (x: not stable)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, make_parents=True)


def grid_figure(out: Path, docs: Path, table: list[dict], path: Path) -> None:
    """One row per entry, seeds 0-7 (a conditional entry: each seed's own class), labelled; an entry
    without weights under `out` takes the row an earlier report kept in `docs`."""
    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    from core.images import make_grid, save_png, to_uint8
    from core.seeds import latents, seed_classes
    from networks.files import load_generator

    rows, names = [], []
    for t in table:
        kept = docs / f"{t['name']}-seeds.png"  # this entry's row, kept for clones without its weights
        if t["from_run"] and (out / t["name"] / "Generator.pth").is_file():
            g, card = load_generator(out / t["name"])
            z = torch.from_numpy(latents(GRID_SEEDS, g.z_dim))
            y = (torch.from_numpy(seed_classes(GRID_SEEDS, g.z_dim, card.get("class_counts") or [1] * g.n_classes))
                 if g.n_classes else None)
            with torch.no_grad():
                faces = to_uint8(g(z, y).numpy())
            save_png(Image.fromarray(np.concatenate(list(faces), axis=1)), kept)
        elif kept.is_file():
            strip = np.asarray(Image.open(kept).convert("RGB"))
            faces = np.stack(np.split(strip, len(GRID_SEEDS), axis=1))
        else:
            continue
        rows.append(faces)
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

    table = summary(a.out, entries, a.docs)
    if not any(t["rows"] for t in table):
        raise UserError(f"no evaluations under {a.out} yet: train first (python -m scripts.compare_gans --data ...)")
    a.docs.mkdir(parents=True, exist_ok=True)
    for t in table:
        if not t["from_run"]:
            continue
        src = a.out / t["name"] / "evals.csv"
        if src.is_file():
            shutil.copyfile(src, a.docs / f"{t['name']}-evals.csv")
        if failure(a.out / t["name"]):
            shutil.copyfile(a.out / t["name"] / "compare.json", a.docs / f"{t['name']}-failure.json")
        if t["keep_facts"]:
            (a.docs / f"{t['name']}-run.json").write_text(json.dumps({k: t[k] for k in FACTS}, indent=1) + "\n")
    curve_figure(table, a.docs / "fid.png", a.kimg)
    grid_figure(a.out, a.docs, table, a.docs / "grid.png")
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
