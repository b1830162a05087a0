"""Publish a run for others to fine-tune: its checkpoint as a compact state in parts of at most 25 MiB.

examples:
  python -m trainer.publish runs/best --out published/best
  python -m trainer.train --finetune published/best --data data/my_faces/ --out runs/mine

The folder holds state.json (what it is, sizes, sha256 of every part) and state.pt.part00, ...:
G, D and the EMA as float16 (--precision fp32 keeps everything, optimiser moments included).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.errors import UserError, command
from networks.files import load_torch
from trainer.publish.compact import PUBLISH_PART_BYTES, compact_state, save_state


@command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.publish", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a run folder (its checkpoint.pt)")
    p.add_argument("--out", type=Path, required=True, help="the folder to publish (created; must not hold another run)")
    p.add_argument("--precision", default="fp16", choices=["fp16", "fp32"], help="of the networks (default fp16)")
    p.add_argument("--part-mib", type=float, default=PUBLISH_PART_BYTES / 2**20, help="largest file (default 25)")
    a = p.parse_args(argv)
    if a.part_mib < 1:
        raise UserError("--part-mib must be at least 1")
    if a.out.exists() and any(a.out.iterdir()) and not (a.out / "state.json").is_file():
        raise UserError(f"{a.out} holds other files; publish into a new folder")
    full = load_torch(a.run / "checkpoint.pt" if a.run.is_dir() else a.run)
    manifest = save_state(compact_state(full, a.precision), a.out, int(a.part_mib * 2**20))
    print(json.dumps({k: manifest[k] for k in ("recipe", "step", "images_seen", "bytes", "precision")}))
    print(f"published {a.out} ({len(manifest['parts'])} parts); fine-tune with: "
          f"python -m trainer.train --finetune {a.out} --data FACES --out runs/NAME")
    return 0


if __name__ == "__main__":
    sys.exit(main())
