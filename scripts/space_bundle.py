"""The files a Hugging Face Space needs, gathered into one folder ready to upload, and nothing else.

    python -m scripts.space_bundle --out build/space
    hf upload YOUR_NAME/anime-face-studio build/space . --repo-type space   # huggingface_hub's CLI

A Space runs `python app.py` after `pip install -r requirements.txt`: it gets app.py, the torch-free
packages the app imports (core/, runtime/, demo/, with the shipped models), requirements.txt without
the editable install, LICENSE, and a README made for the Space (README.md's front matter, what the
Space is, its API, the terms, and the one picture it shows, carried along). Never the training data,
run folders, checkpoints or anything made from the images: the bundle is built from an allow-list
and checked for images and archives before anything is written (docs/space.md).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from core.errors import UserError, command

ROOT = Path(__file__).resolve().parents[1]
FILES = ("app.py", "requirements.txt", "LICENSE")
PICTURE = ROOT / "docs" / "app.png"  # the one picture the Space's README shows (a screenshot, no training image)
SPACE_README = """
# Anime Face Studio

Anime faces from seeds with a small GAN: one face, a grid, 1,000 faces in a zip, a morph between
seeds, steering (hair colour, brightness, ...), a conditional model that draws the hair colour
you ask for, and Your face: the nearest face a model can draw to a picture you upload (deleted as
soon as it is read), steered or morphed from there. Seed 42 is the same face every time. The
in-browser page at `/edge/` makes faces on your own device.

![The app](app.png)

Every tab is an API endpoint:

```python
from gradio_client import Client
c = Client("YOUR_NAME/anime-face-studio")
big, png, caption = c.predict(42, 1.0, api_name="/face")                    # seed, psi
big, png, caption = c.predict(42, 1.0, "cgan", "blonde", api_name="/face")  # a model's name, a class
```

The code is under the MIT license (LICENSE). The models were trained on the Anime Face Dataset,
character art whose dataset terms say it is for educational use only: use the models and their
faces for learning, research and demonstration. Each model's card (the About tab) says how it was
made and how well it scores.
"""
PACKAGES = ("core", "runtime", "demo")
SKIP = ("__pycache__", "node_modules", "package-lock.json", "package.json", "README.md")  # READMEs link the repository
DATA_SUFFIXES = (".jpg", ".jpeg", ".webp", ".zip", ".pt", ".pth", ".npz")


def bundle_files() -> list[Path]:
    files = [ROOT / f for f in FILES]
    for pkg in PACKAGES:
        files += [p for p in sorted((ROOT / pkg).rglob("*")) if p.is_file()
                  and not any(part in SKIP for part in p.relative_to(ROOT).parts)]
    return files


def space_requirements(text: str) -> str:
    """requirements.txt without the editable install of this project and the comments about it: a
    Space runs `python app.py` from its root, where the packages import as they are, and the bundle
    carries no pyproject.toml for pip to build."""
    def about_editable(line: str) -> bool:
        low = line.lower()
        return line.lstrip().startswith("#") and any(w in low for w in ("editable", "repository's root", "-e ."))
    return "".join(line for line in text.splitlines(keepends=True)
                   if line.strip() not in ("-e .", ".") and not about_editable(line))


def space_readme() -> str:
    """README.md's front matter (what the Space runs, its license) and the Space's own page."""
    text = (ROOT / "README.md").read_text()
    if not text.startswith("---\n"):
        raise UserError("README.md has no front matter: a Space needs it (sdk, app_file, license)")
    front = text[:text.index("\n---\n", 4) + 5]
    return front + SPACE_README


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
        if p.name == "requirements.txt" and p.parent == ROOT:
            dst.write_text(space_requirements(p.read_text()))
        else:
            shutil.copy2(p, dst)
    (out / "README.md").write_text(space_readme())
    shutil.copy2(PICTURE, out / PICTURE.name)
    files += [out / "README.md", out / PICTURE.name]
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
