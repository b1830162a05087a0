"""The snapshots a GPU call of the long run leaves in its output folder, and how to read them back.

Two slots of the compact resumable state (`snap-a.part00`, ..., `snap-b.*`), `Generator.pth` (the EMA
generator as float16, BatchNorm statistics measured for it) and `snapshot.json`, written last: it
names the newest complete slot with its sha256s, the generator's card, this call's history and the
run's calls so far. Each snapshot fills the older slot first, so one slot is always complete, and a
call killed at any moment still returns a usable state.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path


from core.errors import UserError
from core.files import atomic_write_bytes, atomic_write_text
from trainer.compact import compact_state, from_bytes, join_parts, manifest_of, split, to_bytes
from trainer.run_files import run_card
from trainer.run_state import RunState

SLOTS = ("a", "b")


@dataclass
class Limits:
    """What one call may bring back (the device tool's $OUT limits)."""
    part_bytes: int = 16 * 2**20 - 64 * 1024
    max_files: int = 8
    max_bytes: int = 64 * 2**20

    def check(self, state_bytes: int, generator_bytes: int) -> None:
        parts = -(-state_bytes // self.part_bytes)
        files = 2 * parts + 3  # two slots, snapshot.json, Generator.pth, session.log
        total = 2 * state_bytes + generator_bytes + 2 * 2**20  # + the log and snapshot.json
        if files > self.max_files or total > self.max_bytes:
            raise UserError(f"a snapshot would not come back: {files} files and {total / 2**20:.1f} MiB "
                            f"(state {state_bytes / 2**20:.1f} MiB in {parts} parts, generator "
                            f"{generator_bytes / 2**20:.1f} MiB) against {self.max_files} files and "
                            f"{self.max_bytes / 2**20:.1f} MiB; use smaller networks, fp16 snapshots or larger parts")


class Snapshots:
    """The double-buffered snapshots in the output folder."""

    def __init__(self, out: Path, limits: Limits, precision: str, call: dict, runs_before: list[dict]):
        self.out, self.limits, self.precision, self.call = out, limits, precision, call
        self.runs_before = runs_before        # one row per earlier GPU call of this run
        out.mkdir(parents=True, exist_ok=True)
        self.pointer = read_pointer(out) or {"latest": None, "slots": {}}
        self.history: list[dict] = []          # this call's rows, one per snapshot
        self.losses: list[dict] = []           # this call's loss log (losses.csv's rows)
        self.last_good: bytes | None = None

    def runs(self, s: RunState) -> list[dict]:
        """The run's calls so far, this one included as far as it has come."""
        c = self.call
        trained = max(1e-9, s.seconds - c["seconds_at_start"])
        row = {"call": len(self.runs_before) + 1, "device": c["device"], "recipe": s.r.name, "from": c["from"],
               "images_at_start": c["images_at_start"], "images_at_end": s.images_seen,
               "images_per_s": round((s.images_seen - c["images_at_start"]) / trained, 1),
               "call_seconds": round(time.time() - c["started_at"], 1), "training_seconds": round(trained, 1),
               "proxy_end": next((r["proxy"] for r in reversed(self.history) if "proxy" in r), None),
               "events": c["events"]}
        return self.runs_before + [row]

    def write(self, s: RunState) -> dict:
        slot = SLOTS[1] if self.pointer["latest"] == SLOTS[0] else SLOTS[0]
        runs = self.runs(s)
        state = compact_state(s, self.precision, runs)
        data = to_bytes(state)
        parts = split(data, self.limits.part_bytes)
        names = [f"snap-{slot}.part{i:02d}" for i in range(len(parts))]
        for name, part in zip(names, parts):
            atomic_write_bytes(self.out / name, part)
        g = s.generator_for_export()
        half = {k: (v.detach().cpu().half() if v.is_floating_point() and "running_" not in k else v.detach().cpu())
                for k, v in g.state_dict().items()}
        g_bytes = to_bytes(half)
        atomic_write_bytes(self.out / "Generator.pth", g_bytes)
        manifest = {**manifest_of(state, data, parts, names), "generator_sha256": hashlib.sha256(g_bytes).hexdigest()}
        self.pointer = {"latest": slot, "slots": {**self.pointer["slots"], slot: manifest},
                        "card": {**run_card(s), "weights_dtype": "float16"}, "call": self.call,
                        "history": self.history, "runs": runs, "losses": self.losses}
        atomic_write_text(self.out / "snapshot.json", json.dumps(self.pointer, indent=2) + "\n")
        self.last_good = data
        return self.pointer


def read_pointer(folder: Path) -> dict | None:
    p = folder / "snapshot.json"
    try:
        return json.loads(p.read_text()) if p.is_file() else None
    except ValueError:
        return None


def latest_state(folder: Path) -> tuple[dict, dict]:
    """(the newest complete compact state in a call's output folder, its snapshot.json)."""
    pointer = read_pointer(folder)
    if not pointer or not pointer.get("latest"):
        raise UserError(f"no snapshot.json with a complete snapshot in {folder}")
    state = from_bytes(join_parts(folder, pointer["slots"][pointer["latest"]]), str(folder))
    return state, pointer
