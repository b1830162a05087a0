"""The prepared GPU session, end to end on the CPU with tiny settings: it trains, packs within the
transfer limits, and what it packs unpacks into run folders that export and load as they are."""
import json
import os
import subprocess

import pytest
import torch

from core.errors import UserError
from tests.conftest import ROOT
from trainer.generator_io import load_generator


def test_gpu_session_end_to_end_on_the_cpu(tmp_path, blobs):
    out, runs = tmp_path / "OUT", tmp_path / "runs"
    env = {**os.environ, "DEVICE": "cpu", "DATA": str(blobs), "OUT": str(out), "RUNS": str(runs / "session"),
           "MINUTES": "0.2", "SEED_MINUTES": "0.05", "CANDIDATES": "resnet r3", "CAND_FLAGS": "",
           "EXTRA_ARGS": "--g-width 8 --d-width 8 --batch-size 8 --max-steps 2", "BENCH_STEPS": "1",
           "PYTHON": "python", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(["bash", "scripts/gpu_session.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    files = sorted(p.name for p in out.iterdir())
    assert files[0] == "manifest.json" and files[1] == "runs.tar.part00" and len(files) <= 8
    assert all(p.stat().st_size <= 16 * 2**20 for p in out.iterdir()) and sum(p.stat().st_size for p in out.iterdir()) <= 64 * 2**20
    from scripts.gpu_pack import unpack

    back = unpack(out, tmp_path / "here")
    assert sorted(p.name for p in back) == ["r3", "resnet", "seed-dcgan"]
    speed = (tmp_path / "here" / "extra" / "speed.txt").read_text()
    assert "images/s" in speed and "reads/step" in speed
    for run in back:
        state = torch.load(run / "Generator.pth", weights_only=True)
        assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
        g, card = load_generator(run)  # float16 weights load into the float32 model
        assert next(g.parameters()).dtype == torch.float32 and card["steps"] == 2
        assert (run / "train.log").is_file() and list((run / "samples").glob("*.png"))
    from export.to_onnx import main as export

    assert export(["--checkpoint", str(tmp_path / "here" / "resnet"), "--out", str(tmp_path / "r.onnx")]) == 0
    assert json.loads((tmp_path / "here" / "resnet" / "generator.json").read_text())["arch"]["name"] == "resnet"


def test_pack_refuses_what_would_not_come_back(tmp_path, tiny_run, monkeypatch):
    from scripts import gpu_pack

    monkeypatch.setattr(gpu_pack, "PART_BYTES", 10_000)
    monkeypatch.setattr(gpu_pack, "MAX_BYTES", 60_000)
    with pytest.raises(UserError, match="does not fit"):
        gpu_pack.pack([tiny_run], tmp_path / "out", [])
    assert not (tmp_path / "out").exists()  # nothing half-written
    monkeypatch.setattr(gpu_pack, "PART_BYTES", 120_000)
    monkeypatch.setattr(gpu_pack, "MAX_BYTES", 10**9)
    files = gpu_pack.pack([tiny_run], tmp_path / "out", [])
    assert 2 < len(files) <= 8 and all(f.stat().st_size <= 120_000 for f in files[:-1])
    files[0].write_bytes(files[0].read_bytes()[:-1] + b"x")  # damaged in transit
    with pytest.raises(UserError, match="missing or damaged"):
        gpu_pack.unpack(tmp_path / "out", tmp_path / "back")
