"""The resumable state of a run in a compact form, for publication and for fine-tunes that start from it.

A run's checkpoint.pt keeps everything in float32, Adam's moments included (about 12 bytes per
parameter more than the weights). The compact form keeps what a run needs to go on: G, D and the
EMA (float16 weights; float32 buffers such as BatchNorm statistics and spectral norm's vectors),
counters, random states, the recipe, the classes and the run's options; Adam's moments are dropped
and re-measured when the run resumes (trainer.step.rewarm: a few steps with the learning rate at 0, which fill
the second moments from fresh gradients without moving a weight). With betas (0, 0.9), as the
recipes for long runs use, the first moment is the last gradient and the second averages about
ten steps, so little is lost; `precision="fp32"` keeps everything exactly instead.

On disk: `state.json` (what it is, sizes, sha256) and the state's bytes in parts of at most
`part_bytes` each (`state.pt.part00`, ...), so every file fits a host's file-size limit (25 MiB by default).
torch.load only ever with weights_only=True.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import torch

from core.errors import UserError
from core.files import atomic_write_bytes, atomic_write_text
from networks.files import CheckpointError, load_torch

FORMAT = "anime-gan compact state 1"
PUBLISH_PART_BYTES = 25 * 2**20 - 64 * 1024   # published checkpoints: at most 25 MiB a file


def _half(sd: dict) -> dict:
    """Float parameters as float16; integer and float buffers that are statistics stay float32."""
    out = {}
    for k, v in sd.items():
        keep = not v.is_floating_point() or "running_" in k or k.endswith(("_u", "_v")) or v.numel() <= 4
        out[k] = v.detach().cpu() if keep else v.detach().cpu().half()
    return out


def _full(sd: dict) -> dict:
    return {k: v.detach().cpu().clone() for k, v in sd.items()}


def compact_state(full: dict, precision: str = "fp16", runs: list | None = None) -> dict:
    """A run's checkpoint (RunState.state_dict(), or checkpoint.pt as loaded) as a compact,
    weights_only-loadable dict."""
    if precision not in ("fp16", "fp32"):
        raise UserError(f"precision must be fp16 or fp32, got {precision!r}")
    conv = _half if precision == "fp16" else _full
    return {
        "format": FORMAT, "precision": precision,
        "recipe": full["recipe"], "classes": full.get("classes", []), "data": full["data"], "seed": full["seed"],
        "options": full.get("options", {}), "G": conv(full["G"]), "D": conv(full["D"]),
        "EMA": conv(full["EMA"]) if full.get("EMA") is not None else None,
        "opt_g": full["opt_g"] if precision == "fp32" else None,
        "opt_d": full["opt_d"] if precision == "fp32" else None,
        "rng_cpu": full["rng_cpu"], "rng_cuda": full.get("rng_cuda"),
        "epoch": full["epoch"], "batch": full["batch"], "step": full["step"], "seconds": full["seconds"],
        "best_fid": full.get("best_fid"), "runs": list(runs or []),  # the runs' history, where a tool keeps one
    }


def to_bytes(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def split(data: bytes, part_bytes: int) -> list[bytes]:
    return [data[i:i + part_bytes] for i in range(0, len(data), part_bytes)] or [b""]


def manifest_of(state: dict, data: bytes, parts: list[bytes], names: list[str]) -> dict:
    return {"format": FORMAT, "precision": state["precision"], "recipe": state["recipe"]["name"],
            "step": state["step"], "epoch": state["epoch"], "images_seen": images_seen(state),
            "seconds": state["seconds"], "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "parts": [{"name": n, "bytes": len(p), "sha256": hashlib.sha256(p).hexdigest()} for n, p in zip(names, parts)],
            "runs": state.get("runs", [])}


def images_seen(state: dict) -> int:
    r = state["recipe"]
    return int(state["step"]) * int(r.get("n_critic", 1)) * int(r["batch_size"])


def save_state(state: dict, folder: Path, part_bytes: int = PUBLISH_PART_BYTES, stem: str = "state.pt") -> dict:
    """state.json plus parts of at most part_bytes each; each file is written atomically, the
    manifest last, so a reader sees the old complete set or the new one."""
    data = to_bytes(state)
    parts = split(data, part_bytes)
    names = [f"{stem}.part{i:02d}" for i in range(len(parts))]
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in zip(names, parts):
        atomic_write_bytes(folder / name, part)
    manifest = manifest_of(state, data, parts, names)
    atomic_write_text(folder / "state.json", json.dumps(manifest, indent=2) + "\n")
    for old in folder.glob(f"{stem}.part*"):  # parts of a larger earlier state
        if old.name not in names:
            old.unlink()
    return manifest


def join_parts(folder: Path, manifest: dict) -> bytes:
    chunks = []
    for p in manifest["parts"]:
        path = folder / p["name"]
        data = path.read_bytes() if path.is_file() else None
        if data is None or hashlib.sha256(data).hexdigest() != p["sha256"]:
            raise CheckpointError(f"part {p['name']} of the state in {folder} is missing or damaged")
        chunks.append(data)
    data = b"".join(chunks)
    if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        raise CheckpointError(f"the parts in {folder} do not join into the state their manifest describes")
    return data


def from_bytes(data: bytes, where: str) -> dict:
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - one clear line
        raise CheckpointError(f"{where} is not a readable state ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{where} is not a compact training state")
    return state


def load_state(path: Path) -> dict:
    """A state to continue or fine-tune from: a folder with state.json (compact), a run folder with
    checkpoint.pt, or a checkpoint.pt file. Compact weights come back as float32."""
    path = Path(path)
    if path.is_dir() and (path / "state.json").is_file():
        try:
            manifest = json.loads((path / "state.json").read_text())
        except ValueError:
            raise CheckpointError(f"{path / 'state.json'} is not a state manifest") from None
        state = from_bytes(join_parts(path, manifest), str(path))
        for key in ("G", "D", "EMA"):
            if state.get(key) is not None:
                state[key] = {k: v.float() if v.is_floating_point() else v for k, v in state[key].items()}
        return state
    if path.is_dir():
        if not (path / "checkpoint.pt").is_file():
            raise CheckpointError(f"{path} holds neither state.json (a published checkpoint) nor checkpoint.pt (a run)")
        path = path / "checkpoint.pt"
    return load_torch(path)
