"""The Gradio app, started in-process on a free localhost port and driven through gradio_client."""
import json
import socket
import zipfile

import numpy as np
import pytest
from PIL import Image

from demo.app import build_app
from demo.engine import Engine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tiny_onnx):
    from gradio_client import Client

    engine = Engine.load(tiny_onnx, "cpu")
    app = build_app(engine, max_count=50)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    yield client, engine, port
    app.close()


def test_endpoints_are_named(served):
    client, _, _ = served
    names = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert {"/face", "/random_face", "/grid", "/zip", "/morph"} <= names


def test_face_matches_the_engine(served):
    client, engine, _ = served
    big, png, caption = client.predict(42, 1.0, api_name="/face")
    small = np.asarray(Image.open(png))
    np.testing.assert_array_equal(small, engine.faces([42])[0])
    assert Image.open(big).size == (512, 512) and "Seed 42" in caption
    seed, big2, png2, _ = client.predict(1.0, api_name="/random_face")
    assert 0 <= seed <= 2**32 - 1
    np.testing.assert_array_equal(np.asarray(Image.open(png2)), engine.faces([seed])[0])


def test_grid_cells_carry_their_seeds(served):
    client, engine, _ = served
    img, png, cells, layout = client.predict(100, 2, 3, 1.0, api_name="/grid")
    assert Image.open(png).size == (3 * 66 + 2, 2 * 66 + 2)
    assert [c["caption"] for c in cells] == [f"seed {s}" for s in range(100, 106)]
    np.testing.assert_array_equal(np.asarray(Image.open(cells[4]["image"])), engine.faces([104])[0])
    assert "100" in layout and "105" in layout


def test_zip_endpoint(served):
    client, engine, _ = served
    path, summary = client.predict(20, 7, 1.0, api_name="/zip")
    assert "20 distinct of 20" in summary
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert names[0] == "seed_0000000007.png" and len(names) == 21
        assert json.loads(zf.read("manifest.json"))["seeds"] == "7-26"


def test_morph_endpoint(served):
    client, _, _ = served
    anim, download, frames = client.predict("3,7", 4, "gif", 1.0, api_name="/morph")
    assert len(frames) == 5
    with Image.open(download) as im:
        assert im.n_frames == 5


@pytest.mark.parametrize("endpoint,args,message", [
    ("/face", (-1, 1.0), "from 0 to 4294967295"),
    ("/face", (2**32, 1.0), "from 0 to 4294967295"),
    ("/face", (1.5, 1.0), "whole number"),
    ("/face", (None, 1.0), "empty"),
    ("/face", (1, 0.0), "minimum value 0.05"),
    ("/face", (1, 2.5), "maximum value 2"),
    ("/grid", (0, 17, 2, 1.0), "maximum value 16"),
    ("/grid", (0, 2, 0, 1.0), "minimum value 1"),
    ("/grid", (2**32 - 2, 4, 4, 1.0), "too large"),
    ("/zip", (51, 0, 1.0), "count"),
    ("/zip", (0, 0, 1.0), "count"),
    ("/zip", (5, -3, 1.0), "start seed"),
    ("/morph", ("3,7", 4, "bmp", 1.0), "gif|webp|choices"),
    ("/morph", ("3", 4, "gif", 1.0), "two seeds"),
    ("/morph", ("3,x", 4, "gif", 1.0), "integer"),
    ("/morph", ("3,7", 1, "gif", 1.0), "minimum value 2"),
    ("/morph", ("3,7", 121, "gif", 1.0), "maximum value 120"),
    ("/morph", ("../../etc/passwd", 4, "gif", 1.0), "integer"),
    ("/morph", ("3,7\x00", 4, "gif", 1.0), "integer"),
])
def test_invalid_inputs_give_clear_errors_and_the_server_stays_up(served, endpoint, args, message):
    from gradio_client.exceptions import AppError

    client, _, _ = served
    with pytest.raises(AppError, match=message):
        client.predict(*args, api_name=endpoint)
    assert client.predict(1, 1.0, api_name="/face")[2].startswith("**Seed 1**")


def test_about_tab_shows_the_model_card_and_provider(tiny_onnx):
    engine = Engine.load(tiny_onnx, "cpu")
    app = build_app(engine)
    texts = [c.get("props", {}).get("value") for c in app.config["components"]]
    about = next(t for t in texts if isinstance(t, str) and "Model card" in t)
    assert engine.sha256 in about and "Provider in use: **CPU**" in about and "Recipe: **test**" in about


def test_workdir_keeps_files_for_their_lifetime_then_removes_them(tmp_path, monkeypatch):
    import time

    from demo.app import WorkDir

    monkeypatch.setenv("ANIME_GAN_WORKDIR", str(tmp_path))
    work = WorkDir(ttl_s=1)
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

    from demo.app import WorkDir

    monkeypatch.setenv("ANIME_GAN_WORKDIR", str(tmp_path / "work"))
    cache = tmp_path / "gradio"
    cache.mkdir()
    old, kept, touched = (cache / n for n in ("old.png", "kept.png", "touched.png"))
    for f in (old, kept, touched):
        f.write_bytes(b"x")
    file_set = {str(old), str(kept), str(touched), str(cache / "already-gone.png")}
    work = WorkDir(ttl_s=1)
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


def test_malloc_arenas_are_capped_unless_the_user_chose(monkeypatch):
    import sys

    from demo.app import limit_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False  # the user's setting wins
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert limit_malloc_arenas() is (sys.platform.startswith("linux"))
