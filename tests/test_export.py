import json

import numpy as np
import onnx
import pytest
import torch

from core.ort import open_session
from core.seeds import latents
from export import onnx_export as ox
from export.to_onnx import main
from trainer.config import RECIPES
from networks import fold_batchnorm, resnet
from networks.dcgan import Generator
from trainer.train import main as train_main

TINY = ["--g-width", "8", "--d-width", "8", "--batch-size", "8", "--log-every", "1", "--quiet"]


def as_trained(g: torch.nn.Module) -> torch.nn.Module:
    """G with non-trivial BatchNorm statistics and affine parameters, as after training."""
    g.train()
    with torch.no_grad():
        for _ in range(5):
            g(torch.randn(32, g.z_dim) * 2)
    for m in g.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return g.eval()


def trained_generator(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    return as_trained(Generator(16, 8))


def assert_folds(g: torch.nn.Module) -> torch.nn.Module:
    """The folded copy has no BatchNorm left and computes the same function."""
    folded = fold_batchnorm(g)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    z = torch.from_numpy(latents(range(32), g.z_dim))
    with torch.no_grad():
        assert torch.allclose(g(z), folded(z), atol=1e-5)
    return folded


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_each_recipe_exports_with_parity(tmp_path, blobs, recipe):
    run = tmp_path / recipe
    whole = ["--g-train", "all"] if RECIPES[recipe].g_train != "all" else []  # a fine-tuning recipe, from zero here
    assert train_main(["--data", str(blobs), "--recipe", recipe, "--out", str(run), "--max-steps", "1", *TINY,
                       *whole]) == 0
    out = tmp_path / "g.onnx"
    assert main(["--checkpoint", str(run), "--out", str(out)]) == 0
    report = json.loads(out.with_suffix(".parity.json").read_text())
    rows = report["variants"][0]["parity"]
    assert {r["batch"] for r in rows} == {1, 7, 64}
    assert max(r["max_abs"] for r in rows) <= 1e-4
    meta = ox.read_metadata(out)
    assert meta["recipe"] == recipe and meta["z_dim"] == str(RECIPES[recipe].z_dim)
    assert json.loads(meta["architecture"])["name"] == RECIPES[recipe].g_arch


def test_folded_and_unfolded_graphs_agree():
    g = trained_generator()
    folded = assert_folds(g)
    z = torch.from_numpy(latents(range(32), 16))
    plain = ox.to_onnx_fp32(g, 16)
    fold = ox.to_onnx_fp32(folded, 16)
    assert "BatchNormalization" not in [n.op_type for n in fold.graph.node]
    a = open_session(plain.SerializeToString(), "cpu").session.run(None, {"z": z.numpy()})[0]
    b = open_session(fold.SerializeToString(), "cpu").session.run(None, {"z": z.numpy()})[0]
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert len(fold.graph.node) < len(plain.graph.node)


def test_graph_interface(tmp_path):
    g = trained_generator()
    m = ox.to_onnx_fp32(fold_batchnorm(g), 16)
    onnx.checker.check_model(m, full_check=True)
    inp, out = m.graph.input[0], m.graph.output[0]
    assert inp.name == "z" and [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", 16]
    assert out.name == "image" and [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 3, 64, 64]


@pytest.mark.parametrize("variant", ["fp16", "int8"])
def test_edge_variants_pass_their_gates_and_are_smaller(tmp_path, variant):
    g = trained_generator()
    card = {"arch": {"name": "dcgan", "z_dim": 16, "g_width": 8}, "recipe": {"name": "t"}}
    fp32 = ox.to_onnx_fp32(fold_batchnorm(g), 16)
    base = ox.write_verified(g, fp32, "fp32", tmp_path / "g.onnx", card)
    res = ox.write_verified(g, ox.VARIANTS[variant](fp32, 16, 0), variant, tmp_path / f"g-{variant}.onnx", card)
    assert res.passed, res.message
    assert res.bytes < base.bytes * (0.6 if variant == "fp16" else 0.45)
    assert max(r["max_abs"] for r in res.parity) <= ox.TOLERANCE[variant]
    assert ox.read_metadata(res.path)["variant"] == variant
    sess = open_session(res.path, "cpu").session
    assert sess.get_inputs()[0].type == "tensor(float)" and sess.get_outputs()[0].type == "tensor(float)"


def test_tampered_model_fails_the_gate_and_writes_nothing(tmp_path):
    g = trained_generator()
    m = ox.to_onnx_fp32(fold_batchnorm(g), 16)
    w = next(t for t in m.graph.initializer if len(t.dims) == 4)
    arr = onnx.numpy_helper.to_array(w).copy()
    arr.flat[:16] += 1.0  # a handful of corrupted weights
    w.CopyFrom(onnx.numpy_helper.from_array(arr, w.name))
    out = tmp_path / "bad.onnx"
    res = ox.write_verified(g, m, "fp32", out, {"arch": {"z_dim": 16, "g_width": 8}})
    assert not res.passed and "missed by" in res.message
    assert list(tmp_path.iterdir()) == []


def test_metadata_round_trips(tmp_path, tiny_run):
    (tiny_run / "eval.json").write_text(json.dumps({"fid": 12.5, "protocol": "FID-5k", "floor": 3.75}))
    out = tmp_path / "m.onnx"
    try:
        assert main(["--checkpoint", str(tiny_run / "Generator.pth"), "--out", str(out), "--model-card", "hello"]) == 0
    finally:
        (tiny_run / "eval.json").unlink()
    meta = ox.read_metadata(out)
    card = json.loads((tiny_run / "generator.json").read_text())
    assert meta["z_dim"] == "100" and meta["output_range"] == "-1,1"
    assert json.loads(meta["architecture"]) == card["arch"]
    assert meta["recipe"] == "seed-dcgan" and meta["steps"] == "3" and meta["model_card"] == "hello"
    # The About tab shows this: the recipe's own text, then what this run trained with instead.
    assert meta["recipe_description"] == (RECIPES["seed-dcgan"].description + " Changed in this run: g_width 8 "
                                          "(recipe: 128), d_width 8 (recipe: 64), batch_size 16 (recipe: 128).")
    assert meta["latent_rule"].startswith("numpy RandomState(seed).randn(z_dim)")
    assert json.loads(meta["fid"]) == {"fid": 12.5, "protocol": "FID-5k", "floor": 3.75}
    assert len(json.loads(meta["parity"])) >= 3 and meta["exporter"].startswith("anime-gan export")


def test_bad_inputs_exit_non_zero_with_one_line(tmp_path, tiny_run, capsys):
    out = tmp_path / "x.onnx"
    assert main(["--checkpoint", str(tmp_path / "missing.pth"), "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err
    junk = tmp_path / "junk" / "Generator.pth"
    junk.parent.mkdir()
    junk.write_bytes(b"definitely not a checkpoint")
    (junk.parent / "generator.json").write_text((tiny_run / "generator.json").read_text())
    assert main(["--checkpoint", str(junk), "--out", str(out)]) == 2
    assert "not a readable PyTorch file" in capsys.readouterr().err
    wrong = tmp_path / "wrong" / "Generator.pth"
    wrong.parent.mkdir()
    torch.save(Generator(100, 16).state_dict(), wrong)  # width 16 weights, width 8 in generator.json
    (wrong.parent / "generator.json").write_text((tiny_run / "generator.json").read_text())
    assert main(["--checkpoint", str(wrong), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "does not match the architecture" in err and err.count("\n") == 1
    nocard = tmp_path / "nocard" / "Generator.pth"
    nocard.parent.mkdir()
    nocard.write_bytes((tiny_run / "Generator.pth").read_bytes())
    assert main(["--checkpoint", str(nocard), "--out", str(out)]) == 2
    assert "generator.json" in capsys.readouterr().err
    assert main(["--checkpoint", str(tiny_run), "--out", str(tmp_path / "x.txt")]) == 2
    assert not out.exists()


def trained_resnet(norm: str = "batch", attention: bool = False) -> torch.nn.Module:
    torch.manual_seed(3)
    g = resnet.Generator(z_dim=16, width=4, cap=32, norm=norm, attention=attention)
    if attention:
        g.attn.gamma.data.fill_(0.7)  # trained: the attention branch contributes
    if norm == "none":
        for m in g.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.data.normal_(0, 0.1)  # leave the zero-initialised residual branches
    return as_trained(g)


def test_resnet_upsampling_equals_nearest_interpolation():
    # The training path repeats pixels with expand/reshape; it must be interpolate's function exactly.
    x = torch.randn(3, 5, 4, 6, requires_grad=True)
    ref = torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
    out = resnet._up(x)
    assert out.shape == (3, 5, 8, 12) and torch.equal(out, ref)
    g = torch.randn_like(ref)
    (grad,) = torch.autograd.grad(out, x, g)
    (ref_grad,) = torch.autograd.grad(ref, x, g)
    torch.testing.assert_close(grad, ref_grad)


def test_self_attention_is_sagans_formula():
    torch.manual_seed(0)
    a = resnet.SelfAttention(16)
    a.gamma.data.fill_(0.5)
    x = torch.randn(2, 16, 8, 8)
    q = a.theta(x).flatten(2)
    k = torch.nn.functional.max_pool2d(a.phi(x), 2).flatten(2)
    v = torch.nn.functional.max_pool2d(a.g(x), 2).flatten(2)
    beta = torch.softmax(torch.einsum("bci,bcj->bij", q, k), dim=-1)  # query i attends to key j
    ref = x + 0.5 * a.o(torch.einsum("bcj,bij->bci", v, beta).reshape(2, 8, 8, 8))
    torch.testing.assert_close(a(x), ref)


@pytest.mark.parametrize("norm,attention", [("batch", False), ("none", False), ("batch", True)])
def test_resnet_generator_folds_and_exports_with_parity(tmp_path, norm, attention):
    g = trained_resnet(norm, attention)
    folded = assert_folds(g)
    fp32 = ox.to_onnx_fp32(folded, 16)
    ops = {n.op_type for n in fp32.graph.node}
    assert "BatchNormalization" not in ops and {"Conv", "ConvTranspose", "Resize"} <= ops
    card = {"arch": g.arch(), "recipe": {"name": "t"}}
    for variant in ("fp32", "fp16", "int8"):
        res = ox.write_verified(g, ox.VARIANTS[variant](fp32, 16, 0), variant, tmp_path / f"g-{variant}.onnx", card)
        assert res.passed, res.message
    meta = ox.read_metadata(tmp_path / "g-fp32.onnx")
    assert json.loads(meta["architecture"]) == g.arch() and meta["g_parameters"] == str(sum(p.numel() for p in g.parameters()))


def test_trainer_samples_equal_the_exported_models_faces(tmp_path, tiny_run):
    """Seeds 0-63 in the run's sample grid are the faces the exported model makes for seeds 0-63."""
    from PIL import Image

    from core.images import make_grid
    from runtime.engine import Engine

    out = tmp_path / "g.onnx"
    assert main(["--checkpoint", str(tiny_run), "--out", str(out)]) == 0
    grid = np.asarray(Image.open(sorted((tiny_run / "samples").glob("step_*.png"))[-1]))
    ours = make_grid(Engine.load(out, "cpu").faces(range(64)), cols=8)
    assert grid.shape == ours.shape
    assert np.abs(grid.astype(int) - ours.astype(int)).max() <= 1  # fp32 ONNX vs PyTorch rounding


def test_a_truncated_checkpoint_is_one_complete_line(tmp_path, tiny_run, capsys):
    cut = tmp_path / "cut" / "Generator.pth"
    cut.parent.mkdir()
    data = (tiny_run / "Generator.pth").read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    (cut.parent / "generator.json").write_text((tiny_run / "generator.json").read_text())
    assert main(["--checkpoint", str(cut), "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a readable PyTorch file (truncated or damaged?)" in err
    assert len(err) < 500  # cut at a word, marked [...], never mid-sentence (core.errors.shorten, tested there)
