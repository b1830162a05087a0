"""Change a conditional run's class strength: a new run folder with the class's weights scaled.

examples:
  python -m trainer.class_strength --run runs/cgan-transfer --strength 1.25 --out runs/cgan-transfer-s1.25
  python -m export.to_onnx --checkpoint runs/cgan-transfer-s1.25 --out build/cgan/generator.onnx --fp16
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.errors import command, require
from trainer.class_strength import strengthen


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trainer.class_strength", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="a conditional run folder (Generator.pth, generator.json)")
    p.add_argument("--strength", type=float, required=True, help="factor for the class's weights (1 = as trained)")
    p.add_argument("--out", type=Path, required=True, help="the new run folder (must not exist)")
    return p.parse_args(argv)


@command
def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    require("changing a class strength", "torch")
    info = strengthen(a.run, a.strength, a.out)
    print(f"wrote {a.out} (class strength {info['class_strength']:g}): export it with "
          f"python -m export.to_onnx --checkpoint {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
