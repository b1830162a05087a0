"""A conditional run at another class strength (trainer.class_strength): the class's first-layer
weights scaled after training, as a run folder that export and the runtime take like any other."""
import json

import pytest
import torch

from core.attributes import HAIR_CLASSES
from tests.conftest import trained_like
from networks.files import save_json, save_torch
from trainer.class_strength.__main__ import main
from networks.files import load_generator
from networks import GENERATORS

Z, W, N = 16, 8, len(HAIR_CLASSES)


def _run(folder, n_classes: int = N, class_norm: bool = False, arch: str = "dcgan"):
    extra = {"class_norm": class_norm} if arch == "dcgan" else {}
    g = trained_like(GENERATORS[arch](z_dim=Z, width=W, n_classes=n_classes, **extra)).eval()
    folder.mkdir(parents=True)
    save_torch(g.state_dict(), folder / "Generator.pth")
    save_json({"arch": g.arch(), "recipe": {"name": "cgan-transfer"}, "weights": "ema",
               "classes": HAIR_CLASSES if n_classes else [], "class_counts": [1] * n_classes}, folder / "generator.json")
    (folder / "losses.png").write_bytes(b"\x89PNG\r\n\x1a\nlosses")
    return g


def test_a_strength_is_a_louder_one_hot_and_1_changes_nothing():
    g = trained_like(GENERATORS["dcgan"](z_dim=Z, width=W, n_classes=N)).eval()
    z, y = torch.randn(8, Z), torch.arange(8) % N
    with torch.no_grad():
        before = g(z, y)
        g.strengthen_class(1.0)
        assert torch.equal(g(z, y), before)
        g.strengthen_class(1.7)
        got = g(z, y)
        g.strengthen_class(1 / 1.7)
        g.classes.eye.mul_(1.7)  # the same generator fed a one-hot of 1.7
        want = g(z, y)
    assert torch.allclose(got, want, atol=1e-5) and (got - before).abs().max() > 1e-3
    for other in (GENERATORS["dcgan"](z_dim=Z, width=W), GENERATORS["dcgan"](z_dim=Z, width=W, n_classes=N, class_norm=True)):
        with pytest.raises(ValueError, match="first layer"):
            other.strengthen_class(1.5)


def test_the_command_writes_a_run_that_exports_and_says_its_strength(tmp_path):
    from export.onnx_export import read_metadata
    from export.to_onnx import main as export
    from runtime.engine import Engine

    g = _run(tmp_path / "run")
    assert main(["--run", str(tmp_path / "run"), "--strength", "1.5", "--out", str(tmp_path / "s15")]) == 0
    strong, info = load_generator(tmp_path / "s15")
    assert info["class_strength"] == 1.5 and info["strengthened_from"] == str(tmp_path / "run")
    assert info["arch"] == g.arch() and info["classes"] == HAIR_CLASSES
    assert (tmp_path / "s15" / "losses.png").read_bytes() == (tmp_path / "run" / "losses.png").read_bytes()
    w0, w1 = g.net[0].weight.detach(), strong.net[0].weight.detach()
    assert torch.equal(w1[:Z], w0[:Z]) and torch.allclose(w1[Z:], 1.5 * w0[Z:])
    # Strengths multiply: the run's own record stays true after a second change.
    assert main(["--run", str(tmp_path / "s15" / "Generator.pth"), "--strength", "2", "--out", str(tmp_path / "s3")]) == 0
    assert json.loads((tmp_path / "s3" / "generator.json").read_text())["class_strength"] == 3.0
    out = tmp_path / "x.onnx"
    assert export(["--checkpoint", str(tmp_path / "s15"), "--out", str(out)]) == 0
    assert read_metadata(out)["class_strength"] == "1.5"
    engine = Engine.load(out, device="cpu")
    assert engine.about()["class_strength"] == 1.5
    assert engine.faces([42], cls="red").shape == (1, 64, 64, 3)


@pytest.mark.parametrize("case", ["unconditional", "class norms", "resnet", "strength 0", "out exists", "no run"])
def test_refusals_are_one_line_and_write_nothing(tmp_path, capsys, case):
    run, out, strength = tmp_path / "run", tmp_path / "out", "1.5"
    if case != "no run":
        _run(run, n_classes=0 if case == "unconditional" else N, class_norm=case == "class norms",
             arch="resnet" if case == "resnet" else "dcgan")
    if case == "strength 0":
        strength = "0"
    if case == "out exists":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    assert main(["--run", str(run), "--strength", strength, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    expected = {"unconditional": "needs a conditional DCGAN", "class norms": "no class norms",
                "resnet": "a resnet generator takes no class strength", "strength 0": "(0, 10]",
                "out exists": "never overwritten", "no run": "not found"}[case]
    assert expected in err
    if case == "out exists":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    else:
        assert not out.exists()
