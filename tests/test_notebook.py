"""notebooks/train.ipynb executed top to bottom as a student runs it, outside Colab (its Drive and
share-link cells skip themselves), on the CPU with tiny settings and a small synthetic data zip,
unattended through its NB_* parameters."""
from __future__ import annotations

import json
import os
import zipfile

import pytest

from tests.conftest import ROOT

NOTEBOOK = ROOT / "notebooks" / "train.ipynb"


def test_the_notebook_runs_top_to_bottom(tmp_path, blobs, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    data = tmp_path / "faces.zip"
    with zipfile.ZipFile(data, "w") as zf:
        for p in sorted(blobs.glob("*.png")):
            zf.write(p, f"faces/{p.name}")
    out = tmp_path / "run"
    env = {"NB_RECIPE": "best", "NB_MINUTES": "10", "NB_DATA_SOURCE": "path", "NB_DATA": str(data),
           "NB_OUT": str(out), "NB_EVAL_N": "64",
           "NB_EXTRA": "--g-width 8 --d-width 8 --batch-size 16 --max-steps 3 --device cpu --checkpoint-minutes 0"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    assert (out / "checkpoint.pt").is_file() and (out / "Generator.pth").is_file()
    assert (out / "export" / "generator.onnx").is_file() and (out / "export" / "generator-fp16.onnx").is_file()
    report = json.loads((out / "eval.json").read_text())
    assert report["n"] == 64 and report["fid"] > 0
    outputs = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "not in Colab: no Drive to mount" in outputs and "not in Colab: start the app" in outputs
    assert "done: 3 steps" in outputs  # the training cell showed the run's log
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, "the training cell showed no sample grid"


def test_the_notebook_has_a_parameters_cell_and_no_saved_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    params = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1 and "RECIPE" in "".join(params[0]["source"])
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")  # committed clean
    assert os.path.getsize(NOTEBOOK) < 40_000
