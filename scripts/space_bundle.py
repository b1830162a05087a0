"""The files a Hugging Face Space needs, gathered into one folder ready to upload, and nothing else.

    python -m scripts.space_bundle --out build/space
    hf upload YOUR_NAME/anime-face-studio build/space . --repo-type space   # huggingface_hub's CLI

A Space runs `python app.py` (README.md's front matter says so) after `pip install -r requirements.txt`:
it needs app.py, README.md, requirements.txt, the torch-free packages the app imports (core/,
runtime/, demo/) and the shipped models (demo/models/). It must not get the training data, run
folders, checkpoints or anything derived from the images: the bundle is built from an allow-list and
checked for images before it is written. `hf upload` sends files over 10 MB (the default model) by
Xet/LFS itself, so no .gitattributes is needed.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from core.errors import UserError, command

ROOT = Path(__file__).resolve().parents[1]
FILES = ("app.py", "README.md", "requirements.txt")
PACKAGES = ("core", "runtime", "demo")
SKIP = ("__pycache__", "node_modules", "package-lock.json", "package.json")
DATA_SUFFIXES = (".jpg", ".jpeg", ".webp", ".zip", ".pt", ".pth", ".npz")


def bundle_files() -> list[Path]:
    files = [ROOT / f for f in FILES]
    for pkg in PACKAGES:
        files += [p for p in sorted((ROOT / pkg).rglob("*")) if p.is_file()
                  and not any(part in SKIP for part in p.relative_to(ROOT).parts)]
    return files


def space_requirements(text: str) -> str:
    """requirements.txt without the line that installs this project (`-e .`): a Space runs only
    `python app.py` from its root, where the packages import as they are, and the bundle carries no
    pyproject.toml for pip to build."""
    return "".join(line for line in text.splitlines(keepends=True) if line.strip() not in ("-e .", "."))


def build(out: Path) -> dict:
    files = bundle_files()
    data = [str(p.relative_to(ROOT)) for p in files if p.suffix.lower() in DATA_SUFFIXES]
    if data:
        raise UserError(f"the bundle would carry data or training files ({', '.join(data[:3])}); nothing was written")
    if out.exists():
        shutil.rmtree(out)
    for p in files:
        dst = out / p.relative_to(ROOT)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if p.name == "requirements.txt":
            dst.write_text(space_requirements(p.read_text()))
        else:
            shutil.copy2(p, dst)
    return {"out": str(out), "files": len(files), "mib": round(sum(p.stat().st_size for p in files) / 2**20, 1),
            "models": sorted(p.name for p in files if p.suffix == ".onnx")}


@command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.space_bundle", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "build" / "space")
    a = p.parse_args(argv)
    print(json.dumps(build(a.out)))
    print(f"next: hf upload YOUR_NAME/anime-face-studio {a.out} . --repo-type space")
    return 0


if __name__ == "__main__":
    sys.exit(main())
