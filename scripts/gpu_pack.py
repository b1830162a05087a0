"""Bring training runs back from a GPU machine within its transfer limits, and unpack them here.

    python scripts/gpu_pack.py pack runs/seed-dcgan runs/resnet --out $OUT      # on the GPU machine
    python scripts/gpu_pack.py unpack /work/.device/files --runs runs/gpu         # here, afterwards

`pack` writes one tar of every run's generator (Generator.pth as float16: half the bytes; it loads
into the float32 model as it is), generator.json, losses.csv and .png, the last sample grid and the
log, plus any extra files named with --extra, split into parts of at most 16 MiB: at most 8 files
and 64 MiB in all, or it fails before writing anything. Checkpoints (G, D and both optimisers) stay
behind: they are several times larger. `unpack` checks the parts' sha256 against the manifest,
joins them and restores run folders that export/to_onnx.py and scripts/ship_model.sh take as they are.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.errors import UserError  # noqa: E402
from core.files import atomic_write_bytes, atomic_write_text  # noqa: E402

PART_BYTES = 16 * 2**20 - 64 * 1024   # under the 16 MiB a returned file may have
MAX_FILES, MAX_BYTES = 8, 64 * 2**20  # files and bytes a call may return, the manifest included
SMALL = ("generator.json", "losses.csv", "losses.png", "train.log", "fid.csv")


def _fp16_generator(path: Path) -> bytes:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    buf = io.BytesIO()
    torch.save(half, buf)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def pack(runs: list[Path], out: Path, extra: list[Path]) -> list[Path]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for run in runs:
            if not (run / "Generator.pth").is_file():
                raise UserError(f"{run} has no Generator.pth")
            _add(tar, f"{run.name}/Generator.pth", _fp16_generator(run / "Generator.pth"))
            for name in SMALL:
                if (run / name).is_file():
                    _add(tar, f"{run.name}/{name}", (run / name).read_bytes())
            samples = sorted((run / "samples").glob("*.png"))
            for s in samples[-1:]:
                _add(tar, f"{run.name}/samples/{s.name}", s.read_bytes())
        for f in extra:
            _add(tar, f"extra/{f.name}", f.read_bytes())
    data = buf.getvalue()
    parts = [data[i:i + PART_BYTES] for i in range(0, len(data), PART_BYTES)] or [b""]
    if len(parts) + 1 > MAX_FILES or len(data) + 4096 > MAX_BYTES:
        raise UserError(f"{len(data) / 2**20:.1f} MiB in {len(parts)} parts does not fit {MAX_FILES - 1} parts and "
                        f"{MAX_BYTES / 2**20:.0f} MiB; bring back fewer or smaller runs")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, part in enumerate(parts):
        written.append(atomic_write_bytes(out / f"runs.tar.part{i:02d}", part))
    manifest = {"runs": [r.name for r in runs], "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                "parts": [{"name": p.name, "sha256": hashlib.sha256(d).hexdigest()} for p, d in zip(written, parts)]}
    written.append(atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n"))
    return written


def unpack(folder: Path, runs_dir: Path) -> list[Path]:
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise UserError(f"no manifest.json in {folder}: not the output of gpu_pack.py pack")
    manifest = json.loads(manifest_path.read_text())
    chunks = []
    for p in manifest["parts"]:
        data = (folder / p["name"]).read_bytes() if (folder / p["name"]).is_file() else None
        if data is None or hashlib.sha256(data).hexdigest() != p["sha256"]:
            raise UserError(f"part {p['name']} is missing or damaged in {folder}")
        chunks.append(data)
    data = b"".join(chunks)
    if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        raise UserError("the joined parts do not match the manifest's sha256")
    runs_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        tar.extractall(runs_dir, filter="data")  # "data": no absolute paths, links or device files
    return [runs_dir / name for name in manifest["runs"]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pk = sub.add_parser("pack")
    pk.add_argument("runs", nargs="+", type=Path)
    pk.add_argument("--out", type=Path, required=True)
    pk.add_argument("--extra", nargs="*", type=Path, default=[], help="small files to bring back too (logs, speed)")
    up = sub.add_parser("unpack")
    up.add_argument("folder", type=Path)
    up.add_argument("--runs", type=Path, required=True, help="where the run folders go")
    a = p.parse_args(argv)
    try:
        if a.cmd == "pack":
            files = pack(a.runs, a.out, [f for f in a.extra if f.is_file()])
            total = sum(f.stat().st_size for f in files)
            print(f"packed {len(a.runs)} runs into {len(files)} files, {total / 2**20:.1f} MiB, in {a.out}")
        else:
            for run in unpack(a.folder, a.runs):
                print(f"unpacked {run}")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
