"""A generator exported by this project, read back into PyTorch (trainer.finetune.from_onnx): the same faces as
the torch G it came from, the run card from its metadata, a conditional one distils, and what it
cannot read is a one-line error."""
import json

import pytest
import torch

from core.errors import UserError
from trainer.distill.__main__ import main
from trainer.finetune.from_onnx import load_onnx_generator
from networks.dcgan import Generator

from tests.conftest import export_tiny, trained_like


@pytest.fixture(scope="module")
def conditional(tmp_path_factory):
    torch.manual_seed(3)
    g = trained_like(Generator(z_dim=16, width=8, n_classes=3)).eval()
    path = export_tiny(g, tmp_path_factory.mktemp("teacher") / "tiny-cgan.onnx", g.arch(), "cgan-test",
                       classes=["red", "blue", "green"], counts=[1, 2, 7])
    return g, path


def test_read_back_it_draws_the_torch_generators_faces_for_every_class(conditional):
    g, path = conditional
    back, card = load_onnx_generator(path)
    assert back.arch() == g.arch() and not back.training
    assert card["recipe"]["name"] == "cgan-test" and card["classes"] == ["red", "blue", "green"]
    assert card["class_counts"] == [1, 2, 7]
    z = torch.randn(20, 16)
    for k in range(3):
        y = torch.full((20,), k)
        with torch.no_grad():
            assert torch.allclose(back(z, y), g(z, y), atol=1e-4), k
    # The unfolded norms are identities in eval mode and near them with a batch's own statistics,
    # which is how a student pruned from it starts training.
    back.train()
    with torch.no_grad():
        drift = (back(z, torch.arange(20) % 3) - g(z, torch.arange(20) % 3)).abs().mean()
    assert drift < 0.2, drift


def test_an_fp16_file_reads_back_within_its_export_tolerance(tmp_path):
    from export.onnx_export import to_fp16
    import onnx

    torch.manual_seed(4)
    g = trained_like(Generator(z_dim=16, width=8)).eval()
    fp32 = export_tiny(g, tmp_path / "g.onnx", g.arch())
    fp16 = tmp_path / "g-fp16.onnx"
    model = to_fp16(onnx.load(str(fp32)))
    onnx.save(model, str(fp16))
    back, _ = load_onnx_generator(fp16)
    z = torch.randn(8, 16)
    with torch.no_grad():
        diff = (back(z) - g(z)).abs().max()
    assert 0 < diff < 2e-2  # float16 weights: close, not equal


def test_what_it_cannot_read_is_refused_in_one_line(tmp_path, conditional):
    with pytest.raises(UserError, match="no such ONNX file"):
        load_onnx_generator(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(UserError, match="not an ONNX file"):
        load_onnx_generator(tmp_path / "junk.onnx")
    # A file whose metadata names another width than its weights have.
    import onnx

    model = onnx.load(str(conditional[1]))
    for p in model.metadata_props:
        if p.key == "architecture":
            p.value = json.dumps({**json.loads(p.value), "g_width": 16})
    onnx.save(model, str(tmp_path / "wrong.onnx"))
    with pytest.raises(UserError, match="does not hold the ConvTranspose weights"):
        load_onnx_generator(tmp_path / "wrong.onnx")
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "bare.onnx"))
    with pytest.raises(UserError, match="no architecture in its metadata"):
        load_onnx_generator(tmp_path / "bare.onnx")


def test_a_shipped_onnx_distils_into_a_conditional_student(conditional, tmp_path):
    _, path = conditional
    out = tmp_path / "student"
    assert main(["--teacher", str(path), "--g-width", "4", "--out", str(out), "--kimg", "0.08",
                 "--batch-size", "8"]) == 0
    card = json.loads((out / "generator.json").read_text())
    assert card["arch"] == {"name": "dcgan", "z_dim": 16, "g_width": 4, "n_classes": 3}
    assert card["classes"] == ["red", "blue", "green"] and card["class_counts"] == [1, 2, 7]
    assert card["teacher"]["recipe"]["name"] == "cgan-test" and card["teacher"]["path"] == str(path)
    from networks.files import load_generator

    g, _ = load_generator(out)
    with torch.no_grad():
        assert g(torch.randn(2, 16), torch.tensor([0, 2])).shape == (2, 3, 64, 64)
