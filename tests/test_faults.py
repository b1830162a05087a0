"""Training faults and hostile checkpoints: kill -9 at random moments, malicious pickles."""
import os
import pickle
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import ROOT
from trainer.checkpoint import CheckpointError, load_torch

TINY = ["--g-width", "8", "--d-width", "8", "--batch-size", "16", "--log-every", "1", "--quiet"]


def train_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "trainer.train", *args, *TINY, "--checkpoint-minutes", "0.0001"]


def test_kill_9_at_random_moments_then_resume(tmp_path, blobs):
    """Checkpoints are written every step here, so kills land inside checkpoint writes too."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rng = random.Random(1234)
    total = 60
    started = False
    for attempt in range(4):
        args = ["--resume", str(out)] if started else ["--data", str(blobs), "--recipe", "best", "--out", str(out)]
        proc = subprocess.Popen(train_cmd(*args, "--max-steps", str(total)), cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while not (out / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.2, 1.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        started = True
        state = load_torch(out / "checkpoint.pt")  # the final path always holds a complete checkpoint
        assert 0 < state["step"] <= total
        leftovers = [p.name for p in out.iterdir() if p.name.startswith(".checkpoint.pt.")]
        for name in leftovers:  # a torn temporary file may stay behind, never at the final path
            (out / name).unlink()
    before = load_torch(out / "checkpoint.pt")["step"]
    r = subprocess.run(train_cmd("--resume", str(out), "--max-steps", str(total)), cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-1500:]
    assert load_torch(out / "checkpoint.pt")["step"] == total >= before
    steps = [int(line.split(",")[0]) for line in (out / "losses.csv").read_text().splitlines()[1:]]
    assert steps == sorted(set(steps)) and steps[-1] == total  # no step logged twice after the kills
    torch.load(out / "Generator.pth", weights_only=True)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_saves_everything_and_resume_goes_on(tmp_path, blobs, sig, code):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "trainer.train", "--data", str(blobs), "--recipe", "best", "--out", str(out),
           *TINY, "--max-steps", "100000"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "losses.csv").exists() or len((out / "losses.csv").read_text().splitlines()) < 4:
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-1500:]
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr[-1500:]
    step = load_torch(out / "checkpoint.pt")["step"]
    assert step >= 3 and f"at step {step}: checkpoint and Generator.pth saved" in stdout
    assert f"--resume {out}" in stdout
    assert int((out / "losses.csv").read_text().splitlines()[-1].split(",")[0]) == step
    assert set(torch.load(out / "Generator.pth", weights_only=True)) and (out / "generator.json").exists()
    r = subprocess.run(train_cmd("--resume", str(out), "--max-steps", str(step + 2)), cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-1500:]
    assert load_torch(out / "checkpoint.pt")["step"] == step + 2


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['EVIL_MARKER']}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    evil = tmp_path / "Generator.pth"
    torch.save({"net.0.weight": torch.zeros(1), "payload": _Evil()}, evil)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused by torch.load\\(weights_only=True\\)"):
        load_torch(evil)
    raw = tmp_path / "raw.pth"
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(CheckpointError):
        load_torch(raw)
    assert not marker.exists()


def test_resume_refuses_a_malicious_checkpoint(tmp_path, monkeypatch, capsys):
    from trainer.train import main

    marker = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"step": 1, "x": _Evil()}, run / "checkpoint.pt")
    assert main(["--resume", str(run), *TINY]) == 2
    assert "not a plain weights file" in capsys.readouterr().err
    assert not marker.exists()


def test_code_never_calls_torch_load_without_weights_only():
    offenders = []
    for path in ROOT.rglob("*.py"):
        if any(part.startswith(".") for part in path.relative_to(ROOT).parts):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if "torch.load(" in line and "weights_only=True" not in line and "test_faults" not in path.name:
                offenders.append(f"{path.relative_to(ROOT)}:{n}")
    assert offenders == []
