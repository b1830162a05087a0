"""Put a new evaluation report of a shipped variant into its cards (the menu card demo/models/NAME.json
and docs/models/RUN/card.json) and docs/models/RUN/, without re-exporting: for re-measuring a
shipped model with metrics added after it was shipped (KID, precision and recall).

    python -m scripts.refresh_evaluation --report build/eval/generator-fp16.json --name generator \\
        --run h200-best --variant fp16
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.errors import UserError, command
from core.files import atomic_write_text
from scripts.model_card import ROOT, evaluation


@command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.refresh_evaluation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--report", type=Path, required=True)
    p.add_argument("--name", required=True, help="the shipped model's name (demo/models/NAME.json)")
    p.add_argument("--run", required=True, help="its folder under docs/models/")
    p.add_argument("--variant", required=True, choices=["fp32", "fp16", "int8"])
    a = p.parse_args(argv)
    report = json.loads(a.report.read_text())
    report.get("memorisation", {}).pop("picture", None)  # the closest pairs hold training images: not in docs/
    suffix = "" if a.variant == "fp32" else f"-{a.variant}"
    docs = ROOT / "docs" / "models" / a.run
    if not docs.is_dir():
        raise UserError(f"no {docs}")
    atomic_write_text(docs / f"eval{suffix}.json", json.dumps(report, indent=2) + "\n")
    for card_path in (ROOT / "demo" / "models" / f"{a.name}.json", docs / "card.json"):
        card = json.loads(card_path.read_text())
        card["evaluation"][a.variant] = evaluation(report)
        if card.get("variant") == a.variant:
            card["fid"] = {k: report[k] for k in ("fid", "floor", "protocol")}
        atomic_write_text(card_path, json.dumps(card, indent=2) + "\n")
    print(f"{a.name} {a.variant}: FID {report['fid']}, KID {report.get('kid')}, precision {report.get('precision')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
