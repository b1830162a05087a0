"""The Gradio app, started in-process on a free localhost port and driven through gradio_client."""
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT, TINY_CLASSES


def test_endpoints_are_named_and_take_the_model_then_the_class_last(served):
    """Old calls (without model or class) keep working: both come last, both with defaults."""
    client, _, _ = served
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/face", "/random_face", "/grid", "/zip", "/morph", "/steer", "/strip"} <= set(api)
    for name in ("/face", "/random_face", "/grid", "/zip", "/morph"):
        *_, model, face_class = api[name]["parameters"]
        assert model["parameter_name"] == "model" and model["parameter_has_default"], name
        assert face_class["parameter_name"] == "face_class" and face_class["parameter_has_default"], name
        # The default is unconditional, yet the API page lists the conditional model's classes.
        assert face_class["type"]["enum"] == ["any", *TINY_CLASSES], name
    for name in ("/steer", "/strip"):
        assert api[name]["parameters"][-1]["parameter_name"] == "model"


def test_face_matches_the_engine(served):
    client, registry, _ = served
    engine = registry.get()
    big, png, caption = client.predict(42, 1.0, api_name="/face")
    small = np.asarray(Image.open(png))
    np.testing.assert_array_equal(small, engine.faces([42])[0])
    assert Image.open(big).size == (512, 512) and "Seed 42" in caption
    seed, big2, png2, _ = client.predict(1.0, api_name="/random_face")
    assert 0 <= seed <= 2**32 - 1
    np.testing.assert_array_equal(np.asarray(Image.open(png2)), engine.faces([seed])[0])


def test_every_endpoint_switches_models_by_name(served):
    client, registry, _ = served
    other = registry.get("small-resnet")
    _, png, _ = client.predict(42, 1.0, "small-resnet", api_name="/face")
    np.testing.assert_array_equal(np.asarray(Image.open(png)), other.faces([42])[0])
    _, grid_png, _ = client.predict(3, 1, 2, 1.0, "small-resnet", api_name="/grid")
    np.testing.assert_array_equal(cell(grid_png, 0, 1), other.faces([4])[0])
    path, _ = client.predict(2, 0, 1.0, "small-resnet", api_name="/zip")
    with zipfile.ZipFile(path) as zf:
        assert json.loads(zf.read("manifest.json"))["model"] == "small-resnet.onnx"
    _, download, caption = client.predict("3,7", 2, "gif", 1.0, "small-resnet", api_name="/morph")
    with Image.open(download) as im:
        first = np.asarray(im.convert("RGB"))
    assert first.shape == (256, 256, 3) and "3 → 7" in caption


def cell(grid_png: str, row: int, col: int) -> np.ndarray:
    """One 64 px face from a grid PNG (cells 66 px apart, 2 px border)."""
    g = np.asarray(Image.open(grid_png).convert("RGB"))
    return g[2 + 66 * row:66 + 66 * row, 2 + 66 * col:66 + 66 * col]


def test_a_broken_model_is_reported_and_the_others_keep_working(served):
    from gradio_client.exceptions import AppError

    client, _, _ = served
    with pytest.raises(AppError, match="model 'broken' could not be loaded"):
        client.predict(42, 1.0, "broken", api_name="/face")
    with pytest.raises(AppError, match="unknown model 'nope'"):
        client.predict(42, 1.0, "nope", api_name="/face")
    assert client.predict(42, 1.0, api_name="/face")[2].startswith("**Seed 42**")


def test_the_grid_is_one_picture_whose_layout_names_the_seeds(served):
    """The grid comes back once (its picture, its PNG, a caption of which seed is where): no gallery
    of every cell, whose hundreds of files cost more than the grid itself."""
    client, registry, _ = served
    result = client.predict(100, 2, 3, 1.0, api_name="/grid")
    assert len(result) == 3
    img, png, layout = result
    assert Image.open(png).size == (3 * 66 + 2, 2 * 66 + 2)
    np.testing.assert_array_equal(cell(png, 1, 1), registry.get().faces([104])[0])
    assert "100 + 3·i + j" in layout and "100–105" in layout


def test_zip_endpoint(served):
    client, _, _ = served
    path, summary = client.predict(20, 7, 1.0, api_name="/zip")
    assert "20 distinct of 20" in summary
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert names[0] == "seed_0000000007.png" and len(names) == 21
        assert json.loads(zf.read("manifest.json"))["seeds"] == "7-26"


def test_morph_endpoint_says_what_it_made(served):
    client, _, _ = served
    anim, download, caption = client.predict("3,7", 4, "gif", 1.0, api_name="/morph")
    with Image.open(download) as im:
        assert im.n_frames == 5 and im.size == (256, 256)
    assert caption.startswith("**Morph of seeds 3 → 7**") and "5 frames (4 per step), GIF, 256 px" in caption


@pytest.mark.parametrize("endpoint,args,message", [
    ("/face", (-1, 1.0), "seed must be from 0 to 4294967295, got -1"),
    ("/face", (2**32, 1.0), "from 0 to 4294967295"),
    ("/face", (1.5, 1.0), "seed must be a whole number"),
    ("/face", (None, 1.0), "seed is empty"),
    ("/face", (True, 1.0), "seed must be a whole number from 0 to 4294967295, got True"),
    ("/face", (1, 0.0), r"psi must be in \(0, 2\]"),
    ("/face", (1, 2.5), r"psi must be in \(0, 2\]"),
    ("/face", (1, "x"), "psi must be a number"),
    ("/grid", (0, 17, 2, 1.0), "rows must be from 1 to 16, got 17"),
    ("/grid", (0, 2, 0, 1.0), "columns must be from 1 to 16, got 0"),
    ("/grid", (0, "four", 4, 1.0), "rows must be a whole number"),
    ("/grid", (2**32 - 2, 4, 4, 1.0), "too large"),
    ("/zip", (51, 0, 1.0), "count must be from 1 to 50"),
    ("/zip", (0, 0, 1.0), "count"),
    ("/zip", (5, -3, 1.0), "start seed"),
    ("/morph", ("3,7", 4, "bmp", 1.0), "format must be gif or webp"),
    ("/morph", ("3", 4, "gif", 1.0), "two seeds"),
    ("/morph", ("3,x", 4, "gif", 1.0), "whole number"),
    ("/morph", ("3,7", 1, "gif", 1.0), "frames must be from 2 to 120, got 1"),
    ("/morph", ("3,7", 121, "gif", 1.0), "frames must be from 2 to 120"),
    ("/morph", ("0-15", 120, "gif", 1.0), "at most 241"),
    ("/morph", ("../../etc/passwd", 4, "gif", 1.0), "whole number"),
    ("/morph", ("3,7\x00", 4, "gif", 1.0), "whole number"),
])
def test_invalid_inputs_give_clear_errors_and_the_server_stays_up(served, endpoint, args, message):
    from gradio_client.exceptions import AppError

    client, _, _ = served
    with pytest.raises(AppError, match=message):
        client.predict(*args, api_name=endpoint)
    assert client.predict(1, 1.0, api_name="/face")[2].startswith("**Seed 1**")


def test_about_tab_shows_the_model_card_and_provider(served):
    from demo.handlers import Handlers

    _, registry, _ = served
    about = Handlers(registry, None).about("small-resnet")
    engine = registry.get("small-resnet")
    assert "Model card: Small ResNet (test)" in about and engine.sha256 in about
    assert "Provider in use: **CPU**" in about and "recipe **resnet-test**" in about and "resnet generator" in about
    assert "Latent rule: numpy RandomState(seed).randn(z_dim)" in about  # from the model's metadata
    assert "could not be loaded" in Handlers(registry, None).about("broken")


def test_workdir_keeps_files_for_their_lifetime_then_removes_them(tmp_path, monkeypatch):
    import time

    from demo.sweeper import WorkDir

    work = WorkDir(tmp_path, ttl_s=1)
    made = work.new("seed_0000000001", ".png")
    made.write_bytes(b"x")
    assert made.parent == work.path and made.name.startswith("seed_0000000001-") and made.suffix == ".png"
    assert work.sweep() == 0 and made.exists()
    time.sleep(1.3)
    work.sweep()  # the background sweeper may have been first; either way the file is gone
    assert not made.exists()
    assert list(work.path.iterdir()) == []


def test_workdir_sweeps_gradio_copies_but_not_kept_or_touched_ones(tmp_path, monkeypatch):
    import os
    import time

    from demo.sweeper import WorkDir

    cache = tmp_path / "gradio"
    cache.mkdir()
    old, kept, touched = (cache / n for n in ("old.png", "kept.png", "touched.png"))
    for f in (old, kept, touched):
        f.write_bytes(b"x")
    file_set = {str(old), str(kept), str(touched), str(cache / "already-gone.png")}
    work = WorkDir(tmp_path / "work", ttl_s=1)
    work.adopt([file_set], lambda: {str(kept)})
    work.sweep()  # first sight starts each copy's life
    assert str(cache / "already-gone.png") not in file_set
    time.sleep(0.7)
    os.utime(touched, (time.time() + 5, time.time() + 5))  # handed out again: Gradio touches it
    time.sleep(0.7)
    work.sweep()
    assert not old.exists() and str(old) not in file_set
    assert kept.exists() and touched.exists()
    time.sleep(1.2)
    work.sweep()
    assert not touched.exists() and kept.exists() and file_set == {str(kept)}


def test_workdir_close_removes_everything(tmp_path):
    from demo.sweeper import WorkDir

    cache = tmp_path / "gradio" / "abc123"
    cache.mkdir(parents=True)
    copy = cache / "face.png"
    copy.write_bytes(b"x")
    work = WorkDir(tmp_path / "gradio", ttl_s=600)
    work.adopt([{str(copy)}])
    work.new("seed", ".png").write_bytes(b"y")
    work.close()
    assert not work.path.exists() and not copy.exists() and not cache.exists()


def test_malloc_is_tuned_unless_the_user_chose(monkeypatch):
    import sys

    from demo.memory import release, tune_malloc

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert tune_malloc() is False  # the user's setting wins
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert tune_malloc() is (sys.platform.startswith("linux"))
    release()


def test_a_conditional_model_by_class_through_the_api(served):
    """Seed 42 with class 'blue' is the engine's face; an old call (no class) still works; a wrong
    class is one line naming the choices; zips and morphs take the class too."""
    from gradio_client.exceptions import AppError

    client, registry, _ = served
    engine = registry.get("tiny-cgan")
    _, png, caption = client.predict(42, 1.0, "tiny-cgan", "blue", api_name="/face")
    np.testing.assert_array_equal(np.asarray(Image.open(png)), engine.faces([42], cls="blue")[0])
    assert "class blue" in caption
    _, png, _ = client.predict(42, 1.0, "tiny-cgan", api_name="/face")  # "any": the seed's own class
    np.testing.assert_array_equal(np.asarray(Image.open(png)), engine.faces([42])[0])
    with pytest.raises(AppError, match="class must be one of: any, red, blue, green; got 'pink'"):
        client.predict(42, 1.0, "tiny-cgan", "pink", api_name="/face")
    with pytest.raises(AppError, match="this model has no classes"):
        client.predict(42, 1.0, "generator", "blue", api_name="/face")
    _, grid_png, _ = client.predict(3, 1, 2, 1.0, "tiny-cgan", "green", api_name="/grid")
    np.testing.assert_array_equal(cell(grid_png, 0, 1), engine.faces([4], cls="green")[0])
    path, _ = client.predict(3, 0, 1.0, "tiny-cgan", "red", api_name="/zip")
    with zipfile.ZipFile(path) as zf:
        assert json.loads(zf.read("manifest.json"))["class"] == "red"
    _, download, caption = client.predict("3,7", 2, "gif", 1.0, "tiny-cgan", "green", api_name="/morph")
    with Image.open(download) as im:  # the first frame is seed 3's face in green, shown 4x
        first = np.asarray(im.convert("RGB"))[::4, ::4]
    np.testing.assert_array_equal(first, engine.faces([3], cls="green")[0])
    assert "class green" in caption


def test_the_about_handler_wraps_unknown_models(served, caplog):
    """fn 'about' (the model menu's change event) answers an unknown model in one logged line."""
    import logging

    from demo.handlers import Handlers, wrapped
    import gradio as gr

    _, registry, _ = served
    caplog.set_level(logging.INFO, logger="anime_gan.app")
    fn = wrapped(Handlers(registry, None))["about"]
    with pytest.raises(gr.Error):
        fn("nope")
    rejected = [r for r in caplog.records if r.getMessage().startswith("rejected /about: unknown model")]
    assert len(rejected) == 1 and rejected[0].exc_info is None


def test_the_space_bundle_runs_the_app_and_carries_no_data(tmp_path):
    """What `python -m scripts.space_bundle` gathers for a Hugging Face Space starts the app by itself
    (python app.py, as the Space does), and holds no images, archives or checkpoints."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    from core.system import free_port
    from scripts.space_bundle import DATA_SUFFIXES, build

    info = build(tmp_path / "space")
    space = tmp_path / "space"
    assert (space / "app.py").is_file() and (space / "demo" / "models" / "generator.onnx").is_file()
    assert not [p for p in space.rglob("*") if p.suffix.lower() in DATA_SUFFIXES]
    assert not (space / "trainer").exists() and not (space / "checkpoints").exists()
    assert "generator.onnx" in info["models"]
    # The Space installs its requirements.txt: what the app needs, not this project (no pyproject.toml there).
    reqs = (space / "requirements.txt").read_text().splitlines()
    assert "-e ." not in reqs and any(r.startswith("gradio==") for r in reqs) and not (space / "pyproject.toml").exists()
    assert "-e ." in (ROOT / "requirements.txt").read_text().splitlines()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"GRADIO_SERVER_PORT": str(port), "ANIME_GAN_DEVICE": "cpu"})
    with open(tmp_path / "log", "w") as log:
        server = subprocess.Popen([sys.executable, "app.py"], cwd=space, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and server.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        assert server.poll() is None, (tmp_path / "log").read_text()[-2000:]
        status = {}
        while time.time() < deadline and status.get("/edge/") != 200:  # the page is mounted just after the start
            for path in ("/", "/edge/"):
                try:
                    status[path] = urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30).status
                except urllib.error.HTTPError as exc:
                    status[path] = exc.code
            time.sleep(0.2)
        assert status == {"/": 200, "/edge/": 200}, status
    finally:
        server.terminate()
        server.wait(timeout=30)
