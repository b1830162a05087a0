"""The torch-free runtime: same faces for the same seeds, zips, grids, morphs, providers, bad models."""
import json
import re
import zipfile

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

from core import ort as core_ort
from core.errors import UserError
from core.seeds import latents
from runtime import engine as E
from runtime.writers import write_zip


@pytest.fixture(scope="module")
def eng(tiny_onnx):
    return E.Engine.load(tiny_onnx, "cpu")


def test_seeds_give_the_same_pixels_across_calls_and_batches(eng):
    seeds = list(range(20)) + [2**32 - 1]
    a = eng.faces(seeds, batch_size=1)
    b = eng.faces(seeds, batch_size=7)
    c = eng.faces(seeds[::-1], batch_size=64)[::-1]
    assert a.shape == (21, 64, 64, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(np.asarray(eng.face(7)), a[7])
    np.testing.assert_array_equal(eng.render(latents([7], eng.z_dim)), a[7:8])


def test_psi_changes_the_face(eng):
    assert not np.array_equal(eng.faces([3], psi=0.5), eng.faces([3]))
    with pytest.raises(UserError, match="psi"):
        eng.faces([3], psi=0)


def test_zip_of_1000_distinct_faces_with_manifest(eng, tmp_path):
    out = tmp_path / "faces.zip"
    calls = []
    r = write_zip(eng, range(1000), out, batch_size=128, progress=lambda d, t: calls.append((d, t)))
    assert r["count"] == 1000 and r["distinct"] == 1000 and calls[-1] == (1000, 1000)
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        assert len(names) == 1001 and names[-1] == "manifest.json"
        assert all(re.fullmatch(r"seed_\d{10}\.png", n) for n in names[:-1])
        assert names[42] == "seed_0000000042.png"
        digests = set()
        for n in names[:-1]:
            img = Image.open(zf.open(n))
            assert img.size == (64, 64) and img.mode == "RGB"
            digests.add(hash(img.tobytes()))
        assert len(digests) == 1000
        np.testing.assert_array_equal(np.asarray(Image.open(zf.open(names[42]))), eng.faces([42])[0])
        m = json.loads(zf.read("manifest.json"))
    assert m["seeds"] == "0-999" and m["count"] == 1000 and m["z_dim"] == eng.z_dim
    assert m["model_sha256"] == eng.sha256 and m["provider"] == "CPU" and m["psi"] == 1.0
    assert m["latent_rule"] == eng.metadata["latent_rule"]  # the model's own rule, from its metadata
    assert [p.name for p in tmp_path.iterdir()] == ["faces.zip"]  # no temporary file left


def test_grid_and_morph_shapes(eng, tmp_path):
    from core.images import save_animation

    g, cells = eng.grid(range(12), cols=4)
    assert g.size == (4 * 66 + 2, 3 * 66 + 2) and cells.shape == (12, 64, 64, 3)
    frames = eng.morph([3, 7, 11], 5)
    assert frames.shape == (2 * 5 + 1, 64, 64, 3)
    np.testing.assert_array_equal(frames[0], eng.faces([3])[0])
    np.testing.assert_array_equal(frames[-1], eng.faces([11])[0])
    gif = save_animation(frames, tmp_path / "m.gif", scale=2)
    with Image.open(gif) as im:
        assert im.n_frames == len(frames) and im.size == (128, 128)
    webp = save_animation(frames, tmp_path / "m.webp", scale=1)
    with Image.open(webp) as im:
        assert im.n_frames == len(frames)
    with pytest.raises(UserError):
        eng.morph([3], 5)


def test_card_reads_the_models_metadata(eng):
    c = eng.about()
    assert c["recipe"] == "test" and c["architecture"]["name"] == "dcgan" and c["z_dim"] == 16
    assert c["latent_rule"].startswith("numpy RandomState(seed).randn(z_dim)")
    assert c["parameters"] == eng.metadata["g_parameters"] and int(c["parameters"]) > 0


def test_provider_is_reported_honestly(eng, tiny_onnx, monkeypatch):
    assert eng.provider == "CPU" and eng.session.get_providers() == ["CPUExecutionProvider"]
    monkeypatch.setattr(core_ort, "nvidia_gpu_present", lambda: False)
    auto = E.Engine.load(tiny_onnx, "auto")
    assert auto.provider == "CPU" and auto.provider_note == "no NVIDIA GPU found; CPU in use"
    with pytest.raises(UserError, match="no NVIDIA GPU found"):
        E.Engine.load(tiny_onnx, "cuda")


def test_gpu_present_but_no_cuda_build_says_so(tiny_onnx, monkeypatch):
    monkeypatch.setattr(core_ort, "nvidia_gpu_present", lambda: True)
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    auto = E.Engine.load(tiny_onnx, "auto")
    assert auto.provider == "CPU" and "no CUDA provider" in auto.provider_note
    with pytest.raises(UserError, match="no CUDA provider"):
        E.Engine.load(tiny_onnx, "cuda")


def test_gpu_present_but_cuda_cannot_start_says_why(tiny_onnx, monkeypatch):
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA provider at all (covered above)")
    if core_ort.nvidia_gpu_present():
        pytest.skip("a real GPU is here")
    monkeypatch.setattr(core_ort, "nvidia_gpu_present", lambda: True)  # a GPU without CUDA libraries
    auto = E.Engine.load(tiny_onnx, "auto")
    assert auto.provider == "CPU" and "could not start CUDA" in auto.provider_note
    with pytest.raises(UserError, match="could not start CUDA"):
        E.Engine.load(tiny_onnx, "cuda")


def _identity_model(path, in_shape, out_shape):
    x = onnx.helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, in_shape)
    y = onnx.helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, out_shape)
    g = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["z"], ["image"])], "g", [x], [y])
    model = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by any recent onnxruntime
    onnx.save(model, path)
    return path


def bad_models(tmp_path, tiny_onnx):
    trunc = tmp_path / "truncated.onnx"
    trunc.write_bytes(tiny_onnx.read_bytes()[: tiny_onnx.stat().st_size // 2])
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    rnd = tmp_path / "random.onnx"
    rnd.write_bytes(np.random.RandomState(0).bytes(5000))
    return {
        "missing": (tmp_path / "missing.onnx", "not found"),
        "empty": (empty, "empty"),
        "truncated": (trunc, "not a usable ONNX model"),
        "random": (rnd, "not a usable ONNX model"),
        "wrong input": (_identity_model(tmp_path / "wi.onnx", ["N", 3, 64, 64], ["N", 3, 64, 64]), "input must be"),
        "wrong output": (_identity_model(tmp_path / "wo.onnx", ["N", 16], ["N", 16]), "output must be"),
    }


def test_bad_model_files_are_refused_with_one_line(tmp_path, tiny_onnx, capsys):
    from demo.generate import main as cli

    for name, (path, message) in bad_models(tmp_path, tiny_onnx).items():
        with pytest.raises(UserError, match=message):
            E.Engine.load(path, "cpu")
        assert cli(["--model", str(path), "--seeds", "1", "--out", str(tmp_path / "o.png")]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("error:") and err.count("\n") == 1 and message in err, (name, err)
    assert not (tmp_path / "o.png").exists()


def test_registry_chooses_by_name_and_survives_a_broken_model(tiny_models):
    from runtime.menu import ModelMenu

    reg = ModelMenu(tiny_models, device="cpu")
    assert reg.default == "generator" and reg.names() == ["generator", "broken", "small-resnet", "tiny-cgan"]
    assert dict(reg.choices())["Small ResNet (test)"] == "small-resnet"
    assert reg.get("small-resnet").about()["architecture"]["name"] == "resnet"
    with pytest.raises(UserError, match="model 'broken' could not be loaded: .*not a usable ONNX model"):
        reg.get("broken")
    assert reg.get(None) is reg.get("generator") and reg.get("") is reg.get("generator")
    with pytest.raises(UserError, match="unknown model 'nope'; choose one of: generator, broken, small-resnet"):
        reg.get("nope")
    assert set(reg.load_all()) == {"broken"}
    assert ModelMenu(tiny_models, device="cpu", default="small-resnet").names()[0] == "small-resnet"
    with pytest.raises(UserError, match="unknown model"):
        ModelMenu(tiny_models, device="cpu", default="missing-name")


def test_shipped_models_load_and_carry_cards():
    from runtime.menu import ModelMenu

    reg = ModelMenu(device="cpu")
    if not reg.entries:
        pytest.skip("no shipped models")
    assert reg.default == "generator" and reg.load_all() == {}
    for name in reg.names():
        engine, entry = reg.get(name), reg.entries[name]
        assert entry.menu_card.get("label") and entry.path.stat().st_size <= 25 * 2**20, name
        assert engine.about()["fid"] is not None, f"{name} has no FID in its metadata"
        assert engine.faces([42]).shape == (1, 64, 64, 3)


def test_a_conditional_model_takes_a_class(tiny_models, tmp_path):
    """The class is part of the ONNX interface; seed 42 with class 'blue' is one face; 'any' lets each
    seed draw its class with the training data's frequencies; a wrong class names the choices."""
    from core.seeds import seed_classes
    from tests.conftest import TINY_CLASSES

    e = E.Engine.load(tiny_models / "tiny-cgan.onnx", "cpu")
    assert e.classes == TINY_CLASSES and e.class_weights == [1, 2, 7]
    blue = e.faces([42, 42], cls="blue")
    np.testing.assert_array_equal(blue[0], blue[1])
    np.testing.assert_array_equal(blue, e.faces([42, 42], cls="blue", batch_size=1))
    assert not np.array_equal(blue[0], e.faces([42], cls="red")[0])  # the class changes the face
    drawn = seed_classes(range(2000), e.z_dim, e.class_weights)
    assert abs(np.mean(drawn == 2) - 0.7) < 0.05 and abs(np.mean(drawn == 0) - 0.1) < 0.03
    np.testing.assert_array_equal(e.faces([5], cls="any")[0], e.faces([5], cls=TINY_CLASSES[drawn[5]])[0])
    with pytest.raises(UserError, match="class must be one of: any, red, blue, green; got 'pink'"):
        e.faces([1], cls="pink")
    frames = e.morph([3, 7], 4, cls="green")
    np.testing.assert_array_equal(frames[0], e.faces([3], cls="green")[0])
    np.testing.assert_array_equal(frames[-1], e.faces([7], cls="green")[0])
    r = write_zip(e, range(6), tmp_path / "c.zip", cls="red")
    with zipfile.ZipFile(tmp_path / "c.zip") as zf:
        assert json.loads(zf.read("manifest.json"))["class"] == "red"
        np.testing.assert_array_equal(np.asarray(Image.open(zf.open("seed_0000000004.png"))),
                                      e.faces([4], cls="red")[0])
    assert r["count"] == 6
    plain = E.Engine.load(tiny_models / "generator.onnx", "cpu")
    assert plain.classes == [] and plain.faces([1], cls="any").shape == (1, 64, 64, 3)
    with pytest.raises(UserError, match="this model has no classes"):
        plain.faces([1], cls="blue")


def test_streamed_zips_keep_memory_flat_and_name_a_full_disk(eng, tmp_path, monkeypatch):
    """Latents are made batch by batch (no list of a million latents), and a full disk in folder
    output names the file and how many faces were written."""
    import errno

    from runtime import writers

    made = []
    real = writers.Engine.stream if hasattr(writers, "Engine") else None
    assert real is not None
    sizes = [len(part) for part, _ in eng.stream(range(300), batch_size=64)]
    assert sizes == [64, 64, 64, 64, 44]
    calls = []

    def full(path, data, *a):
        calls.append(path)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        (tmp_path / "out").mkdir(exist_ok=True)
        path.write_bytes(data)
    monkeypatch.setattr(writers, "atomic_write_bytes", full)
    with pytest.raises(UserError, match=r"could not write .*seed_0000000003.png: the disk is full; 3 of 10 faces"):
        writers.write_folder(eng, range(10), tmp_path / "out")
    assert made == []
