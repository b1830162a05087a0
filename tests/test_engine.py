import json
import re
import zipfile

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

from demo import engine as E
from demo.generate import main as cli


@pytest.fixture(scope="module")
def eng(tiny_onnx):
    return E.Engine.load(tiny_onnx, "cpu")


def test_seeds_give_the_same_latents_and_pixels_across_calls_and_batches(eng):
    z = E.latents([7, 42], eng.z_dim)
    np.testing.assert_array_equal(z[0], np.random.RandomState(7).randn(eng.z_dim).astype(np.float32))
    seeds = list(range(20)) + [2**32 - 1]
    a = eng.faces(seeds, batch_size=1)
    b = eng.faces(seeds, batch_size=7)
    c = eng.faces(seeds[::-1], batch_size=64)[::-1]
    assert a.shape == (21, 64, 64, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(np.asarray(eng.face(7)), a[7])


def test_psi_scales_latents_and_is_validated(eng):
    np.testing.assert_allclose(E.latents([3], 8, 0.5), 0.5 * E.latents([3], 8))
    for bad in (0, -1, 2.5, float("nan"), float("inf"), "x", None):
        with pytest.raises(E.EngineError):
            E.check_psi(bad)
    assert not np.array_equal(eng.faces([3], psi=0.5), eng.faces([3]))


@pytest.mark.parametrize("spec,expected", [
    ("0-3", [0, 1, 2, 3]), ("1,5,9-12", [1, 5, 9, 10, 11, 12]), (" 7 ", [7]), ("4294967295", [2**32 - 1]),
    ("3, 1 - 2", [3, 1, 2]),
])
def test_parse_seeds(spec, expected):
    assert E.parse_seeds(spec) == expected
    assert E.parse_seeds(E.compress_seeds(expected)) == expected


@pytest.mark.parametrize("spec,message", [
    ("", "empty"), ("a", "integer"), ("-1", "outside"), ("4294967296", "outside"), ("5-2", "backwards"),
    ("1,,2", "integer"), ("1.5", "integer"), ("0-99999999", "too many"), ("1e3", "integer"),
])
def test_parse_seeds_errors(spec, message):
    with pytest.raises(E.EngineError, match=message):
        E.parse_seeds(spec, limit=1000)


def test_zip_of_1000_distinct_faces_with_manifest(eng, tmp_path):
    out = tmp_path / "faces.zip"
    calls = []
    r = eng.write_zip(range(1000), out, batch_size=128, progress=lambda d, t: calls.append((d, t)))
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
    assert [p.name for p in tmp_path.iterdir()] == ["faces.zip"]  # no temporary file left


@pytest.mark.parametrize("shape", [(3, 64, 64, 3), (1, 5, 7, 3), (2, 130, 66, 3)])
def test_png_batch_decodes_to_the_same_pixels(shape):
    import io

    rng = np.random.RandomState(sum(shape))
    imgs = rng.randint(0, 256, shape).astype(np.uint8)
    imgs[0, :, : shape[2] // 2] = 255  # flat areas and wrap-around differences (255 above 0)
    imgs[0, 1::2, : shape[2] // 2] = 0
    files = E.png_batch(imgs)
    assert len(files) == shape[0]
    for data, img in zip(files, imgs):
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            assert (im.format, im.mode, im.size) == ("PNG", "RGB", (shape[2], shape[1]))
            assert np.array_equal(np.asarray(im), img)


def test_png_batch_refuses_what_it_cannot_encode():
    with pytest.raises(E.EngineError, match="uint8 images"):
        E.png_batch(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(E.EngineError, match=r"\[8, 8, 3\]"):
        E.png_batch(np.zeros((8, 8, 3), np.uint8))


def test_grid_and_morph_shapes(eng, tmp_path):
    g = eng.grid(range(12), cols=4, pad=2)
    assert g.size == (4 * 66 + 2, 3 * 66 + 2)
    frames = eng.morph([3, 7, 11], 5)
    assert len(frames) == 2 * 5 + 1 and frames[0].size == (64, 64)
    np.testing.assert_array_equal(np.asarray(frames[0]), eng.faces([3])[0])
    np.testing.assert_array_equal(np.asarray(frames[-1]), eng.faces([11])[0])
    gif = E.save_animation(frames, tmp_path / "m.gif", scale=2)
    with Image.open(gif) as im:
        assert im.n_frames == len(frames) and im.size == (128, 128)
    webp = E.save_animation(frames, tmp_path / "m.webp", scale=1)
    with Image.open(webp) as im:
        assert im.n_frames == len(frames)
    with pytest.raises(E.EngineError):
        eng.morph([3], 5)


def test_slerp_keeps_the_norm_between_endpoints():
    a, b = E.latents([1, 2], 512)
    mid = E.slerp(a, b, 0.5)
    assert abs(np.linalg.norm(mid) - np.linalg.norm(a)) < 0.05 * np.linalg.norm(a)
    np.testing.assert_allclose(E.slerp(a, b, 0.0), a, atol=1e-5)


def test_provider_is_reported(eng, tiny_onnx):
    assert eng.provider == "CPU" and eng.session.get_providers() == ["CPUExecutionProvider"]
    auto = E.Engine.load(tiny_onnx, "auto")
    assert auto.provider == auto.session.get_providers()[0].replace("ExecutionProvider", "")
    if auto.provider == "CPU":
        assert auto.provider_note  # it says why it is not on CUDA


def test_forced_cuda_without_cuda_is_an_error(tiny_onnx, monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(E.EngineError, match="no CUDA provider"):
        E.Engine.load(tiny_onnx, "cuda")
    auto = E.Engine.load(tiny_onnx, "auto")
    assert auto.provider == "CPU" and "no CUDA provider" in auto.provider_note


def test_forced_cuda_that_cannot_start_is_an_error(tiny_onnx):
    probe = E.Engine.load(tiny_onnx, "auto")
    if probe.provider == "CUDA":
        pytest.skip("CUDA works on this machine")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA provider at all (covered above)")
    with pytest.raises(E.EngineError, match="could not start CUDA"):
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
    for name, (path, message) in bad_models(tmp_path, tiny_onnx).items():
        with pytest.raises(E.EngineError, match=message):
            E.Engine.load(path, "cpu")
        assert cli(["--model", str(path), "--seeds", "1", "--out", str(tmp_path / "o.png")]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("error:") and err.count("\n") == 1 and message in err, (name, err)
    assert not (tmp_path / "o.png").exists()


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
    assert cli([*m, "--morph", "3,7", "--frames", "4", "--out", str(tmp_path / "m.gif")]) == 0
    assert Image.open(tmp_path / "m.gif").n_frames == 5


@pytest.mark.parametrize("args,message", [
    (["--seeds", "x"], "integer"), (["--seeds", "9-1"], "backwards"), (["--seeds", "99999999999"], "outside"),
    (["--count", "0"], "--count"), (["--seeds", "1", "--count", "3"], "either"), (["--psi", "0"], "psi"),
    (["--psi", "nan"], "psi"), (["--morph", "3,7", "--frames", "1"], "--frames"), (["--grid", "axb"], "--grid"),
    (["--out", "NOPE/x/faces.zip"], "does not exist"), (["--out", "faces.txt"], "--out"),
    (["--morph", "3,7", "--out", "m.png"], ".gif"), (["--seeds", "1-3", "--out", "x.png"], "one seed"),
    (["--batch-size", "0"], "--batch-size"), (["--device", "cuda"], "cuda"),
])
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, tiny_onnx, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    if args == ["--device", "cuda"]:
        monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert cli(["--model", str(tiny_onnx), "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_cli_default_makes_1000_distinct_faces_with_the_shipped_model(tmp_path, monkeypatch, capsys):
    if not E.DEFAULT_MODEL.is_file():
        pytest.skip("no shipped model")
    monkeypatch.chdir(tmp_path)
    assert cli(["--quiet", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "1000 faces, 1000 distinct of 1000" in out and "faces.zip" in out
    with zipfile.ZipFile(tmp_path / "faces.zip") as zf:
        assert len(zf.namelist()) == 1001
