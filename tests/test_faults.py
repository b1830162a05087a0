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
from networks.files import CheckpointError, load_torch

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


def test_a_full_disk_stops_training_with_one_line_and_keeps_the_checkpoint(tmp_path, blobs, capsys, monkeypatch):
    import errno

    from trainer import run_files
    from trainer.train import main

    out = tmp_path / "run"
    assert main(["--data", str(blobs), "--recipe", "best", "--out", str(out), "--max-steps", "2", *TINY]) == 0
    good = (out / "checkpoint.pt").read_bytes()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "samples" / "x.png"))
    monkeypatch.setattr(run_files, "save_samples", full)
    assert main(["--resume", str(out), "--max-steps", "4", *TINY[-3:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the disk is full" in err and f"--resume {out}" in err
    assert load_torch(out / "checkpoint.pt")["step"] in (2, 4) and (out / "checkpoint.pt").read_bytes() != b""
    assert good  # the previous complete checkpoint was replaced only by a complete one


def test_resume_needs_room_for_one_file_not_all_of_them(tmp_path, blobs, monkeypatch, capsys):
    import shutil
    from collections import namedtuple

    from trainer import run_files
    from trainer.train import main

    out = tmp_path / "run"
    assert main(["--data", str(blobs), "--recipe", "best", "--out", str(out), "--max-steps", "1", *TINY]) == 0
    usage = namedtuple("usage", "total used free")
    size = (out / "checkpoint.pt").stat().st_size
    need = run_files.output_bytes(*[sum(p.numel() for p in net.parameters()) for net in _nets()], True, resume=True)
    assert size < need < 1.3 * size + 3 * 2**20  # about one checkpoint's temporary copy, not every file twice
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**12, 0, need))
    assert main(["--resume", str(out), "--max-steps", "2", *TINY[-3:]]) == 0, capsys.readouterr().err
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**12, 0, size // 2))
    assert main(["--resume", str(out), "--max-steps", "3", *TINY[-3:]]) == 2
    assert "not enough free disk space" in capsys.readouterr().err


def _nets():
    from trainer.config import get_recipe
    from networks import discriminator_for, generator_for

    r = get_recipe("best", g_width=8, d_width=8)
    return generator_for(r), discriminator_for(r, False)


def test_resume_keeps_the_runs_limits_and_removes_stale_temporaries(tmp_path, blobs):
    """A resumed run keeps --max-steps and --checkpoint-minutes unless given again, and a temporary
    file a kill -9 left behind is removed at the next start."""
    from trainer.train import main

    out = tmp_path / "run"
    assert main(["--data", str(blobs), "--recipe", "best", "--out", str(out), "--max-steps", "3",
                 "--checkpoint-minutes", "7", *TINY]) == 0
    stale = out / ".losses.png._76rmmh6.tmp"
    stale.write_bytes(b"torn")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    assert main(["--resume", str(out), "--quiet"]) == 0  # no limits given: the run's own apply
    state = load_torch(out / "checkpoint.pt")
    assert state["step"] == 3 and state["options"]["max_steps"] == 3 and state["options"]["checkpoint_minutes"] == 7
    assert not stale.exists()
    assert main(["--resume", str(out), "--max-steps", "5", "--quiet"]) == 0
    assert load_torch(out / "checkpoint.pt")["step"] == 5


def test_raw_pickles_and_their_advice(tmp_path, monkeypatch):
    monkeypatch.setenv("EVIL_MARKER", str(tmp_path / "pwned"))
    raw = tmp_path / "raw.pth"
    raw.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(CheckpointError, match="is a raw pickle, not a PyTorch weights file") as info:
        load_torch(raw)
    assert "weights_only=False" not in str(info.value) and "weights_only` set to `False" not in str(info.value)
    evil = tmp_path / "evil.pth"
    torch.save({"x": _Evil()}, evil)
    with pytest.raises(CheckpointError, match="it would load posix.system") as info:
        load_torch(evil)
    assert "False" not in str(info.value)


def test_export_to_a_full_disk_names_the_file(tmp_path, tiny_run, monkeypatch, capsys):
    import errno

    import onnx

    from export.to_onnx import main

    def full(model, path, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(onnx, "save", full)
    out = tmp_path / "g.onnx"
    assert main(["--checkpoint", str(tiny_run), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"could not write {out}: No space left on device" in err and "Errno" not in err
    assert not out.exists() and list(tmp_path.glob(".g.onnx*")) == []
