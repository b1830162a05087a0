"""Write a model's card (demo/models/NAME.json) from its run and its measurements, and print the
tables of docs/experiments.md, README.md and demo/models/README.md from the cards.

    python -m scripts.model_card card --run runs/best --build build/best --variant fp16 \\
        --label "H200 best" --notes "..." --out demo/models/generator.json
    python -m scripts.model_card table --write  # every measured model: docs/experiments.md's table
    python -m scripts.model_card menu --write   # the shipped models: README's and demo/models/README.md's table, their faces
    python -m scripts.model_card figure         # docs/models/comparison.png: every model's seeds 0-63
    python -m scripts.model_card figure --picture losses.png --out docs/models/losses.png
    python -m scripts.model_card curve --run runs/cgan-transfer --out docs/models/cgan-transfer/evals.png
    python -m scripts.model_card tradeoff docs/models/cgan-transfer/*.csv --out docs/models/cgan-transfer/tradeoff.png

A card holds what the app's About tab and the model tables show: recipe, architecture and size, training
(epochs, steps, wall time, hardware, data), FID-5k with its floor, duplicates, memorisation and the
parity of every variant, and notes on what differs from a plain run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from core.dataset import data_record
from core.errors import UserError, command, require
from core.figures import pyplot, save_figure
from core.files import atomic_write_text, sha256_file
from core.images import save_png
from runtime.settings import model_files

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = ("fp32", "fp16", "int8")
MENU_PAGES = (ROOT / "README.md", ROOT / "demo" / "models" / "README.md")  # the pages with the shipped models' table
STRIP_SEEDS = range(8)  # the faces each shipped model shows in the model tables
# The Anime Face Dataset's terms, which every model trained on it carries (docs/data.md, README "License").
ANIME_TERMS = ("Trained on the Anime Face Dataset (character art from getchu.com), whose terms say it should only be "
               "used for educational purposes; the art belongs to its artists and publishers. Use this model and the "
               "faces it makes for learning, research and demonstration. The code's MIT license does not cover them.")


def terms_for(dataset: dict, given: str | None = None) -> str:
    """What a card says about the weights' terms: as given, the Anime Face Dataset's for a model trained on
    it (a copy of it or a distillation of such a model), else a reminder that the data's own terms apply."""
    if given:
        return given
    name = str(dataset.get("name", ""))
    if not name or "anime" in name.lower():
        return ANIME_TERMS
    return f"Trained on {name}: the terms of that data apply to this model and the faces it makes."


def _suffix(variant: str) -> str:
    return "" if variant == "fp32" else f"-{variant}"


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def evaluation(report: dict) -> dict:
    out = {"fid": report["fid"], "floor": report["floor"], "protocol": report["protocol"],
           "duplicates_exact": report["duplicates"]["exact"], "duplicates_near": report["duplicates"]["near"],
           "of": report["memorisation"]["n"], "memorisation_rate": report["memorisation"]["rate"],
           "median_nn_distance": round(report["memorisation"]["median_nn_distance"], 4)}
    for key in ("kid", "kid_std", "precision", "recall"):  # reports from before these metrics lack them
        if key in report:
            out[key] = report[key]
    if report.get("per_class", {}).get("classes"):
        pc = report["per_class"]
        out["class_accuracy"] = pc["class_accuracy"]
        out["per_class"] = {k: {f: v[f] for f in ("fid", "class_accuracy", "n_real") if f in v}
                            for k, v in pc["classes"].items()}
    return out


def make_card(run: Path, build: Path, variant: str, label: str, notes: str, shipped: Path | None,
              terms: str | None = None) -> dict:
    from networks.files import find_checkpoint, read_card

    info = read_card(find_checkpoint(run))  # a run folder's Generator.pth, or a checkpoint such as Generator-best.pth
    parity = _json(build / "parity.json") or {"variants": []}
    evals = {v: evaluation(r) for v in VARIANTS if (r := _json(build / f"eval{_suffix(v)}.json"))}
    onnx = build / f"generator{_suffix(variant)}.onnx"
    card = {
        "label": label, "variant": variant, "notes": notes, "terms": terms_for(data_record(info.get("dataset", {})), terms),
        "file_bytes": (shipped or onnx).stat().st_size, "sha256": sha256_file(shipped or onnx),
        "arch": info["arch"], "g_parameters": info.get("g_parameters"),
        "classes": info.get("classes") or [], "class_counts": info.get("class_counts") or [],  # the browser page reads them
        "recipe": info["recipe"], "weights": info.get("weights"),
        **({"class_strength": info["class_strength"]} if "class_strength" in info else {}),
        "training": {k: info.get(k) for k in ("epochs", "steps", "seconds", "hardware", "speed", "torch", "seed")},
        "dataset": data_record(info.get("dataset", {})),
        "fid": {k: evals[variant][k] for k in ("fid", "floor", "protocol")} if variant in evals else None,
        "evaluation": evals,
        "parity": {v["variant"]: {"max_abs": max(r["max_abs"] for r in v["parity"]),
                                  "mean_abs": max(r["mean_abs"] for r in v["parity"]), "passed": v["passed"]}
                   for v in parity["variants"]},
    }
    if card["g_parameters"] is None:  # runs from before the trainer recorded it
        from networks import build_generator

        card["g_parameters"] = sum(p.numel() for p in build_generator(info["arch"]).parameters())
    return card


def table(docs: Path = ROOT / "docs" / "models", prefix: str = "models") -> str:
    """One markdown row per measured model (docs/models/NAME/card.json), best FID first; pictures are
    linked as `prefix`/NAME/... (relative to the page that shows the table)."""
    shipped = {json.loads(p.read_text()).get("sha256"): p.stem for p in (ROOT / "demo" / "models").glob("*.json")
               if not p.name.endswith(".directions.json")}
    rows = []
    for path in sorted(docs.glob("*/card.json")):
        c = json.loads(path.read_text())
        menu = f"`{shipped[c['sha256']]}`" if c["sha256"] in shipped else "not shipped"
        e = c["evaluation"].get(c["variant"]) or next(iter(c["evaluation"].values()), None)
        t = c["training"]
        rows.append((e["fid"] if e else 1e9, (
            f"| `{path.parent.name}` | {menu} | {c['recipe']['name']} ({c['arch']['name']}) | "
            f"{c['g_parameters'] / 1e6:.1f} M | {c['file_bytes'] / 2**20:.1f} MiB {c['variant']} | {_epochs(t['epochs'])} | "
            f"{t['steps']:,} | "
            f"{t['seconds'] / 60:.1f} min, {t['hardware']} | "
            + (f"**{e['fid']:.2f}** | {_kid(e)} | {_pr(e)} | {e['duplicates_near']} | {100 * e['memorisation_rate']:.1f} % |"
               if e else "- | - | - | - | - |")
            + f" [grid]({prefix}/{path.parent.name}/samples.png), [losses]({prefix}/{path.parent.name}/losses.png) |")))
    head = ("| run | in the app | recipe (G) | G parameters | file | epochs | steps | training | FID-5k | "
            "KID x10^3 | precision / recall | near duplicates of 1,000 | memorisation | pictures |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    return "\n".join([head] + [r for _, r in sorted(rows)])


def menu_table(models: Path = ROOT / "demo" / "models", default: str = "generator", page: Path = ROOT / "README.md",
               strips: Path = ROOT / "docs" / "models" / "menu") -> str:
    """One markdown row per shipped model (demo/models/NAME.json, the menu cards), best FID first, with
    the model's seeds 0-7 (`strips`/NAME.png, written by `menu --write`) linked relative to `page`."""
    rows = []
    for onnx in model_files(models):
        path = onnx.with_suffix(".json")
        if not path.is_file():
            continue
        c = json.loads(path.read_text())
        e = (c.get("evaluation") or {}).get(c["variant"]) or {}
        accuracy = f"; {100 * e['class_accuracy']:.1f} % of faces of the asked-for class" if "class_accuracy" in e else ""
        name = f"`{path.stem}`" + (" (default)" if path.stem == default else "")
        strip = strips / f"{path.stem}.png"
        faces = f"![{path.stem}: seeds 0-7]({os.path.relpath(strip, page.parent)})" if strip.is_file() else "-"
        rows.append((e.get("fid", 1e9), f"| {name} | {c['label']}{accuracy} | {c['variant']}, "
                     f"{c['file_bytes'] / 2**20:.1f} MiB | " + (f"**{e['fid']:.2f}** | {_kid(e)} | {_pr(e)} |" if e else "- | - | - |")
                     + f" {faces} |"))
    head = ("| name | what | file | FID-5k | KID x10^3 | precision / recall | seeds 0-7 |\n"
            "| --- | --- | --- | --- | --- | --- | --- |")
    return "\n".join([head] + [r for _, r in sorted(rows)])


def write_strips(models: Path = ROOT / "demo" / "models", out: Path = ROOT / "docs" / "models" / "menu",
                 seeds: range = STRIP_SEEDS) -> list[Path]:
    """Each shipped model's faces for the same seeds (a conditional model: each seed's own class), one
    picture per model, drawn by the runtime as the app draws them; a removed model's picture goes too."""
    from runtime.engine import Engine

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for onnx in model_files(models):
        image, _ = Engine.load(onnx, device="cpu").grid(list(seeds), cols=len(seeds))
        written.append(save_png(image, out / f"{onnx.stem}.png"))
    for old in set(out.glob("*.png")) - set(written):
        old.unlink()
    return written


def _epochs(epochs: float | None) -> str:
    return "-" if epochs is None else f"{epochs:.1f}"  # a distillation sees no data: no epochs


def _kid(e: dict) -> str:
    return f"{1000 * e['kid']:.1f} ± {1000 * e['kid_std']:.1f}" if "kid" in e else "-"


def _pr(e: dict) -> str:
    return f"{e['precision']:.3f} / {e['recall']:.3f}" if "precision" in e else "-"


def figure(out: Path, picture: str = "samples.png", docs: Path = ROOT / "docs" / "models") -> None:
    """One picture of every measured model (its grid of seeds 0-63, or its loss curves) side by side,
    best FID first, each titled with its FID."""
    from PIL import Image, ImageDraw

    cards = []
    for path in docs.glob("*/card.json"):
        c = json.loads(path.read_text())
        e = c["evaluation"].get(c["variant"]) or next(iter(c["evaluation"].values()))
        cards.append((e["fid"], path.parent.name, Image.open(path.parent / picture).convert("RGB")))
    cards.sort()
    w, h = max(c[2].width for c in cards), max(c[2].height for c in cards)
    sheet = Image.new("RGB", (len(cards) * (w + 10) - 10, h + 28), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (fid, name, img) in enumerate(cards):
        sheet.paste(img, (i * (w + 10), 28))
        draw.text((i * (w + 10) + 4, 8), f"{name}: FID-5k {fid:.2f}", fill="black")
    save_png(sheet, out)


def curve(evals_csv: Path, out: Path) -> None:
    """A run's evals.csv as a picture: FID-5k against images seen and, for a conditional run, the
    class accuracy beside it (the trade-off over the run)."""
    plt = pyplot()

    rows = _rows(evals_csv)
    kimg = [int(r["images_seen"]) / 1000 for r in rows]
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    ax.plot(kimg, [float(r["fid"]) for r in rows], "o-", color="tab:blue", label="FID-5k")
    ax.set_xlabel("thousands of images seen in this run")
    ax.set_ylabel("FID-5k (lower is better)", color="tab:blue")
    if rows[0].get("class_accuracy"):
        right = ax.twinx()
        right.plot(kimg, [100 * float(r["class_accuracy"]) for r in rows], "s--", color="tab:red")
        right.set_ylabel("class accuracy, % (higher is better)", color="tab:red")
        right.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.set_title(f"{evals_csv.parent.name}: evaluations during the run")
    fig.tight_layout()
    save_figure(fig, out, make_parents=True)


def _rows(evals_csv: Path) -> list[dict]:
    import csv

    with open(evals_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "fid" not in rows[0]:
        raise UserError(f"{evals_csv} has no evaluations (a run's evals.csv, written by --eval-every)")
    return rows


def tradeoff(evals_csvs: list[Path], out: Path, target_fid: float = 65.0, target_accuracy: float = 90.0) -> None:
    """Conditional runs side by side as class accuracy against FID-5k, one line per evals.csv from
    its first evaluation to its last, each point labelled with its step, the target region (accuracy
    >= target_accuracy %, FID <= target_fid) shaded: whether any attempt reached it, and what each
    point of accuracy cost in faces. Left the whole way, right the last 10 points below the target.
    A file named evals.csv is named by its run's folder, any other by its own name."""
    plt = pyplot()

    runs = []
    for path in evals_csvs:
        rows = _rows(path)
        if not rows[0].get("class_accuracy"):
            raise UserError(f"{path} has no class accuracy (not a conditional run's evaluations)")
        name = path.parent.name if path.stem == "evals" else path.stem
        runs.append((name, [100 * float(r["class_accuracy"]) for r in rows], [float(r["fid"]) for r in rows],
                     [r["step"] for r in rows]))
    near = target_accuracy - 10
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), dpi=110)
    for k, ax in enumerate(axes):
        for name, acc, fid, steps in runs:
            line, = ax.plot(acc, fid, "o-", label=name)
            for a, f, step in zip(acc, fid, steps):
                if k == 1 and a >= near:  # step labels only where the points stand apart
                    ax.annotate(step, (a, f), textcoords="offset points", xytext=(4, 3), fontsize=7,
                                color=line.get_color())
        ax.fill_between([target_accuracy, 100], 0, target_fid, color="tab:green", alpha=0.15,
                        label=f"target: >= {target_accuracy:g} %, FID <= {target_fid:g}")
        ax.set_xlabel("class accuracy, % (higher is better)")
        ax.grid(alpha=0.3)
    close = [f for _, acc, fid, _ in runs for a, f in zip(acc, fid) if a >= near] or [target_fid]
    every = [f for _, _, fid, _ in runs for f in fid]
    axes[0].set(xlim=(0, 100), ylim=(min(every + [target_fid]) - 5, max(every) + 5),
                ylabel="FID-5k (lower is better)", title="the whole way")
    axes[1].set(xlim=(near, min(100, target_accuracy + 5)), ylim=(min(close + [target_fid]) - 5, max(close) + 5),
                title="near the target (labels: steps)")
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle("Class accuracy against FID-5k during each run")
    fig.tight_layout()
    save_figure(fig, out, make_parents=True)


@command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("card")
    c.add_argument("--run", type=Path, required=True,
                   help="run folder (its Generator.pth) or a checkpoint in it (Generator-best.pth), with its card")
    c.add_argument("--build", type=Path, required=True, help="folder with the exports, parity.json and eval*.json")
    c.add_argument("--variant", choices=VARIANTS, default="fp16")
    c.add_argument("--label", required=True, help="the name shown in the app's model menu")
    c.add_argument("--notes", default="", help="what differs from a plain run of the recipe")
    c.add_argument("--shipped", type=Path, help="the shipped .onnx (its size and sha256 go in the card)")
    c.add_argument("--terms", help="under what terms the weights may be used (default: from the training data)")
    c.add_argument("--out", type=Path, required=True)
    tb = sub.add_parser("table", help="every measured model under docs/models/ (docs/experiments.md's table)")
    tb.add_argument("--write", action="store_true", help="fill the table in docs/experiments.md instead of printing it")
    mt = sub.add_parser("menu", help="the shipped models (README's and demo/models/README.md's table)")
    mt.add_argument("--write", action="store_true", help="fill the tables in README.md and demo/models/README.md")
    f = sub.add_parser("figure")
    f.add_argument("--out", type=Path, default=ROOT / "docs" / "models" / "comparison.png")
    f.add_argument("--picture", default="samples.png", choices=["samples.png", "losses.png"])
    k = sub.add_parser("curve", help="a run's evals.csv as a picture (FID-5k and class accuracy over the run)")
    k.add_argument("--run", type=Path, required=True)
    k.add_argument("--out", type=Path, required=True)
    t = sub.add_parser("tradeoff", help="conditional runs' evals.csv files as class accuracy against FID-5k")
    t.add_argument("csvs", type=Path, nargs="+", help="evals.csv files, one line each (named by file name)")
    t.add_argument("--target-fid", type=float, default=65.0)
    t.add_argument("--target-accuracy", type=float, default=90.0, help="percent")
    t.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    if a.cmd in ("curve", "tradeoff"):
        require("drawing a run's evaluations", "matplotlib")
    if a.cmd == "tradeoff":
        tradeoff(a.csvs, a.out, a.target_fid, a.target_accuracy)
        print(f"wrote {a.out}")
        return 0
    if a.cmd == "curve":
        curve(a.run / "evals.csv", a.out)
        print(f"wrote {a.out}")
        return 0
    if a.cmd in ("table", "menu"):
        from scripts.doc_blocks import replace_block

        if a.cmd == "menu" and a.write:  # the pictures first: the tables link only those that exist
            print(f"docs/models/menu/: {len(write_strips())} pictures of seeds 0-7")
        pages = ({ROOT / "docs" / "experiments.md": ("runs", table(prefix="models"))} if a.cmd == "table" else
                 {page: ("models", menu_table(page=page)) for page in MENU_PAGES})
        for page, (block, text) in pages.items():
            if not a.write:
                print(text)
                break
            print(f"{page.relative_to(ROOT)}: {'updated' if replace_block(page, block, text) else 'unchanged'}")
        if a.cmd == "menu" and a.write:
            from runtime.menu import ModelMenu

            index = ModelMenu(ROOT / "demo" / "models").index()
            atomic_write_text(ROOT / "demo" / "models" / "index.json", json.dumps(index, indent=2) + "\n")
            print("demo/models/index.json: written")
        return 0
    if a.cmd == "figure":
        figure(a.out, a.picture)
        print(f"wrote {a.out}")
        return 0
    card = make_card(a.run, a.build, a.variant, a.label, a.notes, a.shipped, a.terms)
    atomic_write_text(a.out, json.dumps(card, indent=2) + "\n", make_parents=True)
    print(f"card: {a.out} (FID {card['fid']['fid'] if card['fid'] else 'not measured'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
