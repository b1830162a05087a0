"""scripts/ship_model.sh end to end, in a copy of the project: a run's best checkpoint becomes a menu
model with its card, directions, table row and picture, and a wrong argument writes nothing."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CODE = ("core", "networks", "export", "metrics", "runtime", "scripts", "trainer", "demo")


def project_copy(dst: Path) -> Path:
    """The code and the two pages with the models' table, without the shipped models."""
    def leave_out(folder: str, names: list[str]) -> set[str]:
        shipped = Path(folder) == ROOT / "demo" / "models"
        return {n for n in names if n == "__pycache__" or shipped and n != "README.md"}

    for name in CODE:
        shutil.copytree(ROOT / name, dst / name, ignore=leave_out)
    shutil.copy(ROOT / "README.md", dst / "README.md")
    return dst


def ship(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # `python` is this interpreter
    return subprocess.run(["bash", "scripts/ship_model.sh", *args], cwd=project, capture_output=True, text=True,
                          env={**os.environ, "PATH": path, "ANIME_GAN_MODELS": str(project / "demo" / "models"),
                               **env}, timeout=600)


def test_ship_model_ships_a_runs_best_checkpoint_into_the_menu(tmp_path, tiny_run):
    from networks.files import load_generator
    from runtime.engine import Engine

    project = project_copy(tmp_path / "project")
    run = project / "runs" / "tiny"
    shutil.copytree(tiny_run, run)
    # A best checkpoint that differs from the last one, with its own card.
    best = {k: v * 1.5 if v.is_floating_point() and k.endswith("weight") else v
            for k, v in torch.load(run / "Generator.pth", weights_only=True).items()}
    torch.save(best, run / "Generator-best.pth")
    card = json.loads((run / "generator.json").read_text())
    (run / "generator-best.json").write_text(json.dumps({**card, "steps": 2}))

    r = ship(project, "runs/tiny/Generator-best.pth", "tiny", "fp32", "Tiny best", SHIP="1", SKIP_EVAL="1",
             DIRECTIONS_SAMPLES="1000")
    assert r.returncode == 0, r.stderr[-2000:]
    models = project / "demo" / "models"
    shipped = json.loads((models / "tiny.json").read_text())
    assert shipped["label"] == "Tiny best" and shipped["training"]["steps"] == 2  # the best's card, not the run's
    assert (models / "tiny.directions.json").is_file()
    assert [m["name"] for m in json.loads((models / "index.json").read_text())["models"]] == ["tiny"]
    # The menu model draws what Generator-best.pth draws.
    g, _ = load_generator(run / "Generator-best.pth")
    engine = Engine.load(models / "tiny.onnx", device="cpu")
    z = engine.latents([0, 1, 2])
    with torch.no_grad():
        want = g(torch.from_numpy(z)).numpy()
    assert np.abs(engine.run(z) - want).max() < 1e-4
    docs = project / "docs" / "models"
    assert {"card.json", "samples.png", "losses.png", "directions.md"} <= {p.name for p in (docs / "tiny-best").iterdir()}
    readme = (project / "README.md").read_text()
    assert "| `tiny` | Tiny best |" in readme and "](docs/models/menu/tiny.png)" in readme
    assert (docs / "menu" / "tiny.png").is_file()


def test_ship_model_refuses_what_is_not_a_checkpoint_and_writes_nothing(tmp_path, tiny_run):
    project = project_copy(tmp_path / "project")
    shutil.copytree(tiny_run, project / "runs" / "tiny")
    for arg, says in (("runs/none", "no runs/none:"), ("runs/tiny/generator.json", "is not a run's")):
        r = ship(project, arg, "x", SHIP="1", SKIP_EVAL="1")
        assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (project / "build").exists() and not list((project / "demo" / "models").glob("x*"))
