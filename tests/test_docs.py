"""The documentation as an outsider meets it: README stays a front door, every link and picture in
README and docs/ resolves, generated tables match what generates them, and nothing names a folder
that only exists outside the repository."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", ROOT / "demo" / "models" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(m) for m in re.findall(r"^#+ (.+)$", text, re.M)}


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold commands, not links
    return LINK.findall(text)


def broken_links(page: Path, root: Path) -> list[str]:
    broken = []
    for target in links(page):
        if re.match(r"^[a-z]+:", target):  # http(s), mailto: not checked here (no network)
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists() or root.resolve() not in dest.parents and dest != root.resolve():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(target)
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_and_picture_resolves(page):
    assert not broken_links(page, ROOT), f"{page.relative_to(ROOT)} links to what does not exist"


def test_the_link_check_can_fail(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\n[ok](#title) [gone](b.md) ![pic](x.png) [no anchor](#nope)\n")
    assert broken_links(tmp_path / "a.md", tmp_path) == ["b.md", "x.png", "#nope"]


def test_readme_is_a_front_door():
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) < 16 * 1024, "README.md over 16 KB: move details to a page in docs/"
    head = "\n".join(text.splitlines()[:40])  # the first screen: a table of contents to every quick start
    for part in ("#two-commands", "#faces-from-the-command-line", "#the-api-from-python", "#train-on-your-own-faces",
                 "#train-in-a-notebook", "#deploy-a-hugging-face-space", "#in-the-browser", "#the-data", "#license"):
        assert f"]({part})" in head, part
    assert (ROOT / "LICENSE").is_file() and "license: mit" in text.split("\n---\n")[0]
    # Every page of docs/ is in README's index.
    assert not [p.name for p in (ROOT / "docs").glob("*.md") if f"(docs/{p.name})" not in text]


def test_generated_tables_match_their_sources():
    from scripts.doc_blocks import read_block
    from scripts.model_card import MENU_PAGES, menu_table, table

    for page in MENU_PAGES:
        assert read_block(page, "models").strip() == menu_table(page=page).strip(), page
    assert read_block(ROOT / "docs" / "experiments.md", "runs").strip() == table(prefix="models").strip()


def test_the_model_tables_show_each_shipped_models_own_faces_for_seeds_0_to_7():
    import numpy as np
    from PIL import Image

    from runtime.engine import Engine
    from runtime.settings import model_files
    from scripts.model_card import STRIP_SEEDS

    models = model_files(ROOT / "demo" / "models")
    assert sorted(p.stem for p in (ROOT / "docs" / "models" / "menu").glob("*.png")) == sorted(m.stem for m in models)
    for onnx in models:
        shown = np.asarray(Image.open(ROOT / "docs" / "models" / "menu" / f"{onnx.stem}.png").convert("RGB"), dtype=float)
        drawn, _ = Engine.load(onnx, device="cpu").grid(list(STRIP_SEEDS), cols=len(STRIP_SEEDS))
        drawn = np.asarray(drawn, dtype=float)
        assert shown.shape == drawn.shape == (68, 2 + 66 * len(STRIP_SEEDS), 3), onnx.name
        # another CPU may round a few pixels of an fp16 or int8 model differently; other faces differ by far more
        assert np.abs(shown - drawn).mean() < 1.0, onnx.name


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / f for f in out.decode().split("\0") if f]


def test_nothing_outside_tests_names_a_folder_beside_the_repository():
    """Commands, defaults, help texts and records must work on a clone that has only the repository
    and a data folder of its own (tests may look for a shared data set and skip without it)."""
    named = [str(p.relative_to(ROOT)) for p in tracked_files()
             if p.is_file() and not p.relative_to(ROOT).parts[0] == "tests" and b"../shared" in p.read_bytes()]
    assert not named, f"these files name ../shared: {named}"


def test_records_name_the_data_set_by_name_and_hash_not_by_path():
    import json

    for path in [*(ROOT / "docs" / "models").rglob("*.json"), *(ROOT / "demo" / "models").glob("*.json")]:
        text = path.read_text()
        assert "/work/" not in text and "/root/" not in text and "/home/" not in text, path
        record = json.loads(text)
        data = record.get("dataset") if isinstance(record, dict) else None
        if isinstance(data, dict):
            assert "path" not in data and data.get("name"), path


def test_the_space_bundle_readme_shows_only_what_it_carries(tmp_path):
    from scripts.space_bundle import build

    build(tmp_path / "space")
    space = tmp_path / "space"
    readme = space / "README.md"
    assert readme.read_text().startswith("---\n") and "app_file: app.py" in readme.read_text()
    assert links(readme) and not broken_links(readme, space)
    assert not list(space.rglob("README.md"))[1:], "only the Space's own README travels"
    reqs = (space / "requirements.txt").read_text()
    assert "-e ." not in reqs.split() and "editable" not in reqs and "repository" not in reqs
