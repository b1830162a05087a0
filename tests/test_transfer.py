"""Fine-tuning a conditional GAN from an unconditional generator: at step 0 the conditional G draws
every class exactly as the source draws any face."""
import json

import pytest
import torch

from core.attributes import HAIR_CLASSES
from core.errors import UserError
from tests.conftest import trained_like
from tests.test_trainer import TINY
from networks.files import load_generator
from networks import GENERATORS, adopt_weights
from trainer.train import main


@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_an_adopted_conditional_generator_is_the_source_for_every_class(arch, mode):
    cls = GENERATORS[arch]
    z_dim, width, n = 16, 8, len(HAIR_CLASSES)
    source = trained_like(cls(z_dim=z_dim, width=width))
    target = cls(z_dim=z_dim, width=width, n_classes=n)
    changed = adopt_weights(target, source.state_dict(), getattr(target, "unconditional_key", lambda k: k))
    assert changed  # the class inputs (dcgan) or per-class norms (resnet) were widened
    source.train(mode == "train")
    target.train(mode == "train")
    z = torch.randn(6, z_dim)
    with torch.no_grad():
        want = source(z)
        for k in range(n):
            got = target(z, torch.full((6,), k))
            # The same function; only float rounding differs (a per-class affine is a matmul, not BatchNorm's).
            assert torch.allclose(got, want, atol=2e-5), f"class {k} differs by {(got - want).abs().max():.2e}"


def test_adopting_weights_of_another_width_is_a_clear_error():
    g64 = GENERATORS["dcgan"](z_dim=16, width=8)
    g = GENERATORS["dcgan"](z_dim=16, width=16, n_classes=3)
    with pytest.raises(UserError, match="does not fit"):
        adopt_weights(g, g64.state_dict())


def test_finetune_a_conditional_recipe_from_a_generator_pth(tmp_path, blobs, monkeypatch):
    """The command: an unconditional run's Generator.pth into `cgan-transfer`; while D warms up G does
    not move, so the run's Generator.pth computes the source's faces for every class. Measured at
    the start and at the end: FID, class accuracy and per-class FID in evals.csv."""
    import csv

    from tests.conftest import fresh_cache

    monkeypatch.setenv("ANIME_GAN_CACHE", str(fresh_cache(tmp_path / "cache")))
    src = tmp_path / "src"
    assert main(["--data", str(blobs), "--recipe", "best", "--out", str(src), "--max-steps", "3", *TINY]) == 0
    out = tmp_path / "cond"
    assert main(["--finetune", str(src / "Generator.pth"), "--recipe", "cgan-transfer", "--data", str(blobs),
                 "--out", str(out), "--max-steps", "2", "--d-width", "8", "--batch-size", "16", "--log-every", "1",
                 "--eval-every", "1", "--eval-n", "40", "--eval-ref-n", "12", "--quiet"]) == 0
    with open(out / "evals.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [0, 2]  # the start, and the end (the run stops inside epoch 1)
    assert {"class_accuracy", "accuracy_black", "fid_black"} <= set(rows[0])
    assert all(0 <= float(r["class_accuracy"]) <= 1 for r in rows)
    best = json.loads((out / "generator-best.json").read_text())
    assert best["steps"] == 2  # the starting point is the source's work, never the run's best
    g0, card0 = load_generator(src / "Generator.pth")
    g1, card1 = load_generator(out / "Generator.pth")
    assert card1["classes"] == HAIR_CLASSES and card1["arch"]["g_width"] == 8 and card1["recipe"]["name"] == "cgan-transfer"
    assert card1["finetuned_from"] == str(src / "Generator.pth") and card1["steps"] == 2
    z = torch.randn(8, card0["arch"]["z_dim"])
    with torch.no_grad():
        want = g0(z)
        for k in range(len(HAIR_CLASSES)):
            assert torch.allclose(g1(z, torch.full((8,), k)), want, atol=1e-5)
    # After the warm-up G learns: the classes start to matter.
    more = tmp_path / "more"
    assert main(["--finetune", str(src), "--recipe", "cgan-transfer", "--data", str(blobs), "--out", str(more),
                 "--max-steps", "3", "--d-warmup-kimg", "0", "--d-width", "8", "--batch-size", "16", "--quiet"]) == 0
    g2, _ = load_generator(more / "Generator.pth")
    with torch.no_grad():
        assert not torch.allclose(g2(z, torch.zeros(8, dtype=torch.long)), g2(z, torch.ones(8, dtype=torch.long)))
    # cgan-transfer trains only what the fine-tune added: G's own weights are the source's, after a
    # resume too (BatchNorm statistics follow the new inputs, as in any training step).
    assert main(["--resume", str(more), "--max-steps", "4", "--quiet"]) == 0
    # The trained weights themselves (the EMA drifts toward them: it started at src's EMA, not its G).
    src_sd = torch.load(src / "checkpoint.pt", weights_only=True)["G"]
    new_sd, z_dim = torch.load(more / "checkpoint.pt", weights_only=True)["G"], card0["arch"]["z_dim"]
    for k, v in src_sd.items():
        if k == "net.0.weight":
            assert torch.equal(new_sd[k][:z_dim], v) and new_sd[k][z_dim:].abs().sum() > 0
        elif not k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.equal(new_sd[k], v), k


def test_finetune_refusals(tmp_path, blobs):
    src = tmp_path / "src"
    assert main(["--data", str(blobs), "--recipe", "cgan-best", "--out", str(src), "--max-steps", "1", *TINY]) == 0
    # A conditional source cannot lose its classes, and the weights fit only their own width.
    assert main(["--finetune", str(src / "Generator.pth"), "--recipe", "best", "--data", str(blobs),
                 "--out", str(tmp_path / "a"), "--quiet"]) == 2
    card = json.loads((src / "generator.json").read_text())
    assert card["arch"]["n_classes"] == len(HAIR_CLASSES)
    assert main(["--finetune", str(src), "--recipe", "cgan-transfer", "--g-width", "16", "--data", str(blobs),
                 "--out", str(tmp_path / "b"), "--quiet"]) == 2
    assert main(["--finetune", str(tmp_path / "nothing"), "--data", str(blobs), "--out", str(tmp_path / "c")]) == 2
    assert not (tmp_path / "a").exists() and not (tmp_path / "b" / "checkpoint.pt").exists()


def test_class_norms_added_to_a_conditional_run_start_as_it_for_every_class(tmp_path, blobs):
    """cgan-transfer-cbn continues a cgan-transfer run (G, D, EMA) with a per-class gain and bias in
    every BatchNorm of G, starting at the trained norm's: at step 0 it draws each class as the run
    did; then only the new norms learn (the run's G weights and its class inputs stay), the trained
    D needs no warm-up, and export's BatchNorm folding keeps the per-class affine."""
    from networks import fold_batchnorm

    first = tmp_path / "first"
    assert main(["--finetune", str(_unconditional_run(tmp_path, blobs)), "--recipe", "cgan-transfer",
                 "--data", str(blobs), "--out", str(first), "--max-steps", "2", "--d-warmup-kimg", "0",
                 "--d-width", "8", "--batch-size", "16", "--quiet"]) == 0
    src_g, _ = load_generator(first / "Generator.pth")
    z, n = torch.randn(8, src_g.z_dim), len(HAIR_CLASSES)
    with torch.no_grad():
        want = [src_g(z, torch.full((8,), k)) for k in range(n)]
    start = tmp_path / "start"  # all steps on D alone: G is still the source
    assert main(["--finetune", str(first), "--recipe", "cgan-transfer-cbn", "--data", str(blobs), "--out", str(start),
                 "--max-steps", "1", "--d-warmup-kimg", "1", "--d-width", "8", "--batch-size", "16", "--quiet"]) == 0
    g0, card0 = load_generator(start / "Generator.pth")
    assert card0["arch"]["class_norm"] is True and card0["recipe"]["g_class_norm"] is True
    with torch.no_grad():
        for k in range(n):
            got = g0(z, torch.full((8,), k))
            assert torch.allclose(got, want[k], atol=2e-5), f"class {k} differs by {(got - want[k]).abs().max():.2e}"
    more = tmp_path / "more"
    assert main(["--finetune", str(first), "--recipe", "cgan-transfer-cbn", "--data", str(blobs), "--out", str(more),
                 "--max-steps", "3", "--d-width", "8", "--batch-size", "16", "--quiet"]) == 0
    card = json.loads((more / "generator.json").read_text())
    assert card["recipe"]["d_warmup_kimg"] == 0  # D came trained
    src_sd = torch.load(first / "checkpoint.pt", weights_only=True)
    new_sd = torch.load(more / "checkpoint.pt", weights_only=True)
    for k, v in src_sd["G"].items():
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked")) and k in new_sd["G"]:
            assert torch.equal(new_sd["G"][k], v), k  # the run's own weights, its class inputs included
    gains = [k for k in new_sd["G"] if k.endswith("affine.gain")]
    assert len(gains) == 4 and any(not torch.all(new_sd["G"][k] == 1) for k in gains)  # the new norms learnt
    assert not torch.equal(new_sd["D"]["net.0.parametrizations.weight.original"],
                           src_sd["D"]["net.0.parametrizations.weight.original"])  # D went on from the run's
    g1, _ = load_generator(more / "Generator.pth")
    y = torch.arange(8) % n
    with torch.no_grad():
        want = g1.eval()(z, y)
        assert torch.allclose(fold_batchnorm(g1)(z, y), want, atol=2e-5)
    # Export folds the statistics, keeps the per-class affine, and passes its parity gate for every class.
    import numpy as np
    import onnxruntime as ort

    from export.to_onnx import main as export

    assert export(["--checkpoint", str(more), "--out", str(tmp_path / "g.onnx"), "--opset", "17"]) == 0
    sess = ort.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"z": z.numpy(), "class": y.numpy().astype(np.int64)})[0]
    assert np.abs(got - want.numpy()).max() < 1e-4


def _unconditional_run(tmp_path, blobs):
    src = tmp_path / "src"
    assert main(["--data", str(blobs), "--recipe", "best", "--out", str(src), "--max-steps", "2", *TINY]) == 0
    return src / "Generator.pth"


def test_class_norms_need_a_conditional_recipe(tmp_path, blobs):
    assert main(["--data", str(blobs), "--recipe", "best", "--g-class-norm", "true", "--out", str(tmp_path / "a"),
                 "--max-steps", "1", *TINY]) == 2
    assert not (tmp_path / "a" / "checkpoint.pt").exists()


def test_finetune_from_an_exported_onnx_starts_at_its_faces(tmp_path, blobs):
    """A clone has the shipped ONNX files, not the runs' Generator.pth: --finetune NAME.onnx starts a
    run whose step-0 G draws the file's faces (D from zero, warming up while G waits), with the
    recipe its menu card names; a distilled source needs --recipe."""
    import numpy as np
    import onnxruntime as ort

    from tests.conftest import export_tiny
    from networks.dcgan import Generator

    torch.manual_seed(5)
    g = trained_like(Generator(z_dim=100, width=8)).eval()
    model = export_tiny(g, tmp_path / "shipped.onnx", g.arch(), "best")
    (tmp_path / "shipped.json").write_text(json.dumps({"label": "x", "recipe": {"name": "best", "g_width": 8}}))
    out = tmp_path / "ft"
    assert main(["--finetune", str(model), "--data", str(blobs), "--out", str(out), "--max-steps", "1",
                 "--d-width", "8", "--batch-size", "16", "--d-warmup-kimg", "1", "--quiet"]) == 0
    card = json.loads((out / "generator.json").read_text())
    assert card["recipe"]["name"] == "best" and card["arch"]["g_width"] == 8 and card["finetuned_from"] == str(model)
    g1, _ = load_generator(out / "Generator.pth")
    z = np.random.RandomState(0).randn(8, 100).astype(np.float32)
    want = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"z": z})[0]
    with torch.no_grad():
        got = g1(torch.from_numpy(z)).numpy()
    # G waited while D warmed up and the EMA is G; what differs is the BatchNorm statistics the run
    # measures again for the G it writes (over more latents than from_onnx's 512).
    diff = np.abs(got - want)
    assert diff.max() < 1e-2 and diff.mean() < 1e-3, (diff.max(), diff.mean())
    assert np.abs(got - got[::-1]).mean() > 20 * diff.mean()  # while the faces differ from each other far more
    # A distilled file's recipe is no training recipe: the command asks for one, in one line.
    model2 = export_tiny(g, tmp_path / "small.onnx", g.arch(), "distill")
    assert main(["--finetune", str(model2), "--data", str(blobs), "--out", str(tmp_path / "d"), "--quiet"]) == 2
    assert main(["--finetune", str(model2), "--recipe", "best", "--data", str(blobs), "--out", str(tmp_path / "e"),
                 "--max-steps", "1", "--d-width", "8", "--batch-size", "16", "--quiet"]) == 0
    assert json.loads((tmp_path / "e" / "generator.json").read_text())["arch"]["g_width"] == 8
