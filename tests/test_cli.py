"""The batch CLI: its products, and every flag checked before any work (one line, exit 2, nothing written)."""
import zipfile

import onnxruntime as ort
import pytest
from PIL import Image

from core import ort as core_ort
from runtime.settings import DEFAULT_NAME, models_dir
from demo.generate import main as cli


def test_cli_products(tmp_path, tiny_onnx, capsys):
    m = ["--model", str(tiny_onnx), "--quiet"]
    assert cli([*m, "--seeds", "1,5,9-12", "--out", str(tmp_path / "z.zip")]) == 0
    out = capsys.readouterr().out
    assert "6 faces, 6 distinct of 6" in out and "provider: CPU" in out
    assert cli([*m, "--count", "4", "--start", "10", "--out", str(tmp_path / "dir")]) == 0
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == [f"seed_{s:010d}.png" for s in range(10, 14)]
    assert cli([*m, "--count", "6", "--grid", "2x3", "--out", str(tmp_path / "g.png")]) == 0
    assert Image.open(tmp_path / "g.png").size == (3 * 66 + 2, 2 * 66 + 2)
    assert cli([*m, "--seeds", "42", "--out", str(tmp_path / "f.png"), "--upscale", "4"]) == 0
    assert Image.open(tmp_path / "f.png").size == (256, 256)
    # --seed is another name for --seeds: seed 42 is the same face either way.
    assert cli([*m, "--seed", "42", "--out", str(tmp_path / "f42.png"), "--upscale", "4"]) == 0
    assert (tmp_path / "f42.png").read_bytes() == (tmp_path / "f.png").read_bytes()
    assert cli([*m, "--morph", "3,7", "--frames", "4", "--out", str(tmp_path / "m.gif")]) == 0
    with Image.open(tmp_path / "m.gif") as im:
        assert im.n_frames == 5 and im.size == (256, 256)  # morphs at 256 px by default, as in the app
    assert cli([*m, "--morph", "3,7", "--frames", "4", "--upscale", "1", "--out", str(tmp_path / "m1.webp")]) == 0
    with Image.open(tmp_path / "m1.webp") as im:
        assert im.size == (64, 64)
    # Missing folders are created, as export/to_onnx.py does (one rule).
    assert cli([*m, "--seeds", "42", "--out", str(tmp_path / "new" / "deeper" / "f.png")]) == 0
    assert (tmp_path / "new" / "deeper" / "f.png").is_file()


def test_cli_models_by_name(tiny_models, monkeypatch, tmp_path, capsys):
    import functools

    import demo.generate
    from runtime.menu import ModelMenu

    monkeypatch.setattr(demo.generate, "ModelMenu", functools.partial(ModelMenu, tiny_models))
    assert cli(["--list-models"]) == 0
    listing = capsys.readouterr().out
    assert "generator" in listing and "Small ResNet (test)" in listing
    assert cli(["--model", "small-resnet", "--seeds", "1", "--out", str(tmp_path / "a.png"), "--device", "cpu"]) == 0
    assert "model: small-resnet" in capsys.readouterr().out
    monkeypatch.setenv("ANIME_GAN_MODEL", "small-resnet")
    assert cli(["--seeds", "1", "--out", str(tmp_path / "b.png"), "--device", "cpu"]) == 0
    assert "model: small-resnet" in capsys.readouterr().out
    assert cli(["--model", "nope", "--seeds", "1", "--out", str(tmp_path / "c.png")]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["--seeds", "x"], "whole number"), (["--seeds", "9-1"], "backwards"), (["--seeds", "99999999999"], "from 0 to"),
    (["--seeds", ""], "--seeds is empty"), (["--count", "0"], "--count"), (["--seeds", "1", "--count", "3"], "either"),
    (["--seed", "1", "--count", "3"], "either"),
    (["--count", "2", "--start", "4294967295"], "would pass"), (["--psi", "0"], "psi"), (["--psi", "nan"], "psi"),
    (["--morph", "3,7", "--frames", "1"], "--frames"), (["--grid", "axb"], "--grid"), (["--grid", "0x0"], "rows"),
    (["--grid", "17x2"], "rows must be from 1 to 16"), (["--morph", "3"], "two seeds"),
    (["--morph", "1-16", "--frames", "120"], "at most 241"), (["--out", "faces.txt"], "--out"),
    (["--morph", "3,7", "--out", "m.png"], ".gif"), (["--seeds", "1-3", "--out", "x.png"], "one seed"),
    (["--batch-size", "0"], "--batch-size"), (["--batch-size", "5000"], "--batch-size"),
    (["--fps", "0", "--morph", "3,7"], "--fps must be from 1 to 50"), (["--fps", "-5", "--morph", "3,7"], "--fps"),
    (["--upscale", "100000", "--seeds", "42", "--out", "big.png"], "--upscale must be from 1 to 16"),
    (["--upscale", "-3", "--seeds", "42", "--out", "a.png"], "--upscale"),
    (["--upscale", "16", "--grid", "16x16", "--count", "256"], "at most 4096"),
    (["--upscale", "16", "--morph", "3,7", "--frames", "20"], "too large an animation"),
    (["--upscale", "2", "--seeds", "1-3"], "not to zips"), (["--device", "cuda"], "cuda"),
])
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, tiny_onnx, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(core_ort, "nvidia_gpu_present", lambda: False)
    loads = []
    monkeypatch.setattr("runtime.engine.Engine.load", lambda *a, **k: loads.append(a) or pytest.fail("model loaded"))
    assert cli(["--model", str(tiny_onnx), "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and err.count("\n") == 1, err
    assert len(err) < 300  # a short line, whatever was typed
    assert list(tmp_path.iterdir()) == [] and loads == []  # refused before the model was even loaded


def test_cli_takes_no_abbreviations(tiny_onnx, capsys):
    # argparse would read "--see 1" as --seeds 1; a flag must be typed whole (--seed is a real alias).
    with pytest.raises(SystemExit) as e:
        cli(["--model", str(tiny_onnx), "--see", "1"])
    assert e.value.code == 2 and "unrecognized arguments: --see 1" in capsys.readouterr().err


def test_cli_error_echo_is_capped(tmp_path, tiny_onnx, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli(["--model", str(tiny_onnx), "--seeds", "x" * 100_000]) == 2
    assert len(capsys.readouterr().err) < 300


def test_cli_default_makes_1000_distinct_faces_with_the_shipped_model(tmp_path, monkeypatch, capsys):
    if not (models_dir() / f"{DEFAULT_NAME}.onnx").is_file():
        pytest.skip("no shipped model")
    monkeypatch.chdir(tmp_path)
    assert cli(["--quiet", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "1000 faces, 1000 distinct of 1000" in out and "faces.zip" in out
    with zipfile.ZipFile(tmp_path / "faces.zip") as zf:
        assert len(zf.namelist()) == 1001


def test_no_gpu_machine_gets_no_cuda_warning(tiny_onnx, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(core_ort, "nvidia_gpu_present", lambda: False)
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert cli(["--model", str(tiny_onnx), "--seeds", "1", "--out", str(tmp_path / "a.png")]) == 0
    out = capsys.readouterr().out
    assert "provider: CPU (no NVIDIA GPU found; CPU in use)" in out and "could not start" not in out


def test_cli_classes(tiny_models, monkeypatch, tmp_path, capsys):
    import functools

    import numpy as np

    import demo.generate
    from runtime.menu import ModelMenu

    monkeypatch.setattr(demo.generate, "ModelMenu", functools.partial(ModelMenu, tiny_models))
    assert cli(["--list-models"]) == 0
    assert "classes: red, blue, green (--class NAME; default any)" in capsys.readouterr().out
    assert cli(["--model", "tiny-cgan", "--class", "blue", "--seeds", "42", "--out", str(tmp_path / "b.png")]) == 0
    assert "class: blue" in capsys.readouterr().out
    engine = ModelMenu(tiny_models, device="cpu").get("tiny-cgan")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "b.png")), engine.faces([42], cls="blue")[0])
    assert cli(["--model", "tiny-cgan", "--class", "pink", "--seeds", "1", "--out", str(tmp_path / "p.png")]) == 2
    assert "class must be one of: any, red, blue, green; got 'pink'" in capsys.readouterr().err
    assert cli(["--model", "generator", "--class", "blue", "--seeds", "1", "--out", str(tmp_path / "g.png")]) == 2
    assert "no classes" in capsys.readouterr().err and not (tmp_path / "p.png").exists()


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_stopped_zip_is_closed_with_what_was_made(tmp_path, tiny_onnx, sig):
    """A million faces stopped by SIGTERM or Ctrl-C: a valid zip of the faces made so far, whose
    manifest says it is incomplete, no temporary file, and the shell's exit code for that signal."""
    import json
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    out = tmp_path / "big.zip"
    p = subprocess.Popen([sys.executable, "-m", "demo.generate", "--model", str(tiny_onnx), "--count", "1000000",
                          "--out", str(out), "--quiet"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        deadline = time.time() + 240  # waits for progress, not for a speed: the signal comes once faces exist
        while time.time() < deadline and p.poll() is None:
            tmps = list(tmp_path.glob(".big.zip.*.tmp"))
            if tmps and tmps[0].stat().st_size > 200_000:
                break
            time.sleep(0.2)
        assert p.poll() is None, "the CLI ended before it could be stopped"
        p.send_signal(getattr(signal, sig))
        _, err = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 128 + getattr(signal, sig), err[-500:]
    assert not list(tmp_path.glob("*.tmp")) and out.is_file()
    with zipfile.ZipFile(out) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        manifest = json.loads(zf.read("manifest.json"))
    pngs = [n for n in names if n.endswith(".png")]
    assert manifest["complete"] is False and manifest["requested"] == 1_000_000
    assert 0 < manifest["count"] == len(pngs) < 1_000_000
    assert pngs[0] == "seed_0000000000.png" and pngs[-1] == f"seed_{len(pngs) - 1:010d}.png"  # seeds 0..N-1, in order
    assert f"stopped by {sig}: {len(pngs)} of 1000000 faces in {out}" in err


def test_a_picture_stopped_by_sigterm_leaves_no_temporary_file(tmp_path, monkeypatch):
    """SIGTERM while a picture is being written: the writer's temporary file is removed (SystemExit
    unwinds through the atomic write), exit code 143."""
    import os
    import signal

    from core.files import atomic_write
    from core.stopping import StopOnSignals

    def slow_write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(b"half")
        os.kill(os.getpid(), signal.SIGTERM)  # arrives in the middle of the write

    with pytest.raises(SystemExit) as stopped, StopOnSignals():
        atomic_write(tmp_path / "face.png", slow_write)
    assert stopped.value.code == 143 and list(tmp_path.iterdir()) == []
