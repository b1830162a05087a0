"""The in-browser page in headless Chromium: the runtime is vendored at the pinned version, seeds give
numpy's latents, seed 42's face matches Python's within the model's parity gate, from a plain static
file server and from the running app, and bad input gets a clear message."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from bench.edge_speed import CHROMIUM, CHROMIUM_ARGS
from bench.edge_speed import static_server as serve_demo
from core.seeds import latents
from runtime.settings import model_files
from tests.conftest import ROOT

WEB = ROOT / "demo" / "web"
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


def test_runtime_is_vendored_at_the_pinned_version():
    pinned = json.loads((WEB / "package.json").read_text())["dependencies"]["onnxruntime-web"]
    lock = json.loads((WEB / "package-lock.json").read_text())
    record = json.loads((WEB / "vendor" / "VERSION.json").read_text())
    assert record["onnxruntime-web"] == pinned == lock["packages"]["node_modules/onnxruntime-web"]["version"]
    for name, info in record["files"].items():
        assert hashlib.sha256((WEB / "vendor" / name).read_bytes()).hexdigest() == info["sha256"], name
    for page_file in ("app.js", "latents.js", "index.html"):  # everything is loaded from beside the page
        assert "https://" not in (WEB / page_file).read_text() and "http://" not in (WEB / page_file).read_text()


@pytest.fixture(scope="module")
def static_server():
    """`python -m http.server -d demo`: demo/web/ and demo/models/ side by side."""
    with serve_demo() as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_page(browser, url):
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_function("() => window.edge && window.edge.coldStartMs !== null", timeout=120_000)
    assert errors == []
    return page


@needs_chromium
def test_latents_equal_numpy_for_many_seeds(browser, static_server):
    page = open_page(browser, f"{static_server}/web/")
    seeds = list(range(200)) + [2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1, 123456789]
    got = page.evaluate("(seeds) => seeds.map((s) => Array.from(window.edge.randn(s, 100)))", seeds)
    for s, row in zip(seeds, got):
        ref = np.random.RandomState(s).randn(100)
        np.testing.assert_allclose(row, ref, rtol=0, atol=1e-15)
        np.testing.assert_array_equal(np.float32(row), ref.astype(np.float32))
    z = page.evaluate("() => Array.from(window.edge.latents([42, 7], 100, 0.5))")
    np.testing.assert_array_equal(np.float32(z), latents([42, 7], 100, 0.5).reshape(-1))


@needs_chromium
def test_seed_42_matches_python_from_a_static_server(browser, static_server):
    from runtime.engine import Engine

    page = open_page(browser, f"{static_server}/web/")
    assert page.evaluate("() => window.edge.model().name") == "generator-w64"
    browser_face = np.array(page.evaluate("async () => Array.from((await window.edge.faces([42]))[0])"), np.uint8)
    browser_face = browser_face.reshape(64, 64, 4)[..., :3]
    engine = Engine.load(ROOT / "demo" / "models" / "generator-w64.onnx", "cpu")
    python_face = engine.faces([42])[0]
    diff = np.abs(browser_face.astype(int) - python_face.astype(int)) / 127.5  # pixels in [-1, 1] units
    assert diff.max() <= 0.35 and diff.mean() <= 0.05  # the int8 parity gate (export/onnx_export.py)
    page.fill("#seed", "4294967296")
    page.click("#go")
    assert "from 0 to 4294967295" in page.locator("#error").inner_text()
    page.fill("#seed", "abc")
    page.click("#go")
    assert "must be a whole number" in page.locator("#error").inner_text()
    page.fill("#seed", "7")
    page.click("#go")
    page.wait_for_function("() => document.querySelector('#face').dataset.seed === '7'")
    assert page.locator("#error").inner_text() == ""
    page.fill("#grid-rows", "2")
    page.click("#grid-go")
    page.wait_for_function("() => document.querySelector('#grid-info').textContent.includes('16 faces')")
    page.fill("#morph-seeds", "3")
    page.click("#morph-go")
    assert "2 to 16 seeds" in page.locator("#error").inner_text()
    page.fill("#morph-seeds", "3,7")
    page.fill("#morph-frames", "4")
    page.click("#morph-go")
    page.wait_for_function("() => document.querySelector('#morph-info').textContent.includes('5 frames')")


@needs_chromium
def test_the_app_serves_the_page_and_its_models(browser, served):
    _, registry, port = served
    page = open_page(browser, f"http://127.0.0.1:{port}/edge/?model=generator")
    face = np.array(page.evaluate("async () => Array.from((await window.edge.faces([42]))[0])"), np.uint8)
    python_face = registry.get("generator").faces([42])[0]
    assert np.abs(face.reshape(64, 64, 4)[..., :3].astype(int) - python_face.astype(int)).max() <= 2  # fp32 model
    page.goto(f"http://127.0.0.1:{port}/edge/?model=missing")
    page.wait_for_function("() => document.querySelector('#error').textContent.length > 0", timeout=60_000)
    assert "could not load ../models/missing.onnx (HTTP 404)" in page.locator("#error").inner_text()
    page.close()


@needs_chromium
def test_the_page_takes_a_class_like_python(browser, served):
    """A conditional model in the page: seed 42 with class 'blue' is Python's face, 'any' draws each
    seed's class as core.seeds.seed_classes does, and the class menu shows the model's classes."""
    from core.seeds import seed_classes
    from tests.conftest import TINY_CLASSES

    _, registry, port = served
    page = open_page(browser, f"http://127.0.0.1:{port}/edge/?model=tiny-cgan")
    assert page.evaluate("() => window.edge.model().classes") == TINY_CLASSES
    assert page.locator("#class-label").is_visible()
    engine = registry.get("tiny-cgan")
    for cls in ("blue", "any"):
        got = np.array(page.evaluate("async (c) => Array.from((await window.edge.faces([42], 1, c))[0])", cls), np.uint8)
        want = engine.faces([42], cls=cls)[0]
        assert np.abs(got.reshape(64, 64, 4)[..., :3].astype(int) - want.astype(int)).max() <= 2, cls
    drawn = page.evaluate("() => Array.from({length: 300}, (_, s) => window.edge.seedClass(s, 16, [1, 2, 7]))")
    assert drawn == seed_classes(range(300), 16, [1, 2, 7]).tolist()
    page.close()


@needs_chromium
def test_a_model_switch_marks_the_grid_and_morph_stale(browser, static_server):
    page = open_page(browser, f"{static_server}/web/")
    page.click("#grid-go")
    page.wait_for_function("() => document.querySelector('#grid-info').textContent.includes('faces in')")
    page.select_option("#model", "generator")
    page.wait_for_function("() => document.querySelector('#grid-info').textContent.includes('model changed')",
                           timeout=120_000)
    page.wait_for_function("() => window.edge.model().name === 'generator'")
    assert "model changed" in page.locator("#morph-info").inner_text()
    page.close()


@needs_chromium
def test_the_page_lists_the_folders_models_and_asks_only_for_what_is_there(browser, served, static_server):
    """The menu is the models folder's (the app's index, or demo/models/index.json from a static
    server), every request the page makes is answered, and no empty picture box shows before a result."""
    from runtime.menu import ModelMenu
    from tests.conftest import ROOT

    _, registry, port = served
    for url, folder in ((f"http://127.0.0.1:{port}/edge/?model=generator", registry.folder),
                        (f"{static_server}/web/", ROOT / "demo" / "models")):
        page = browser.new_page()
        missing = []
        page.on("response", lambda r: r.status >= 400 and missing.append(f"{r.status} {r.url}"))
        page.goto(url)
        assert page.evaluate("() => [...document.querySelectorAll('canvas')].every((c) => c.hidden)")
        page.wait_for_function("() => window.edge && window.edge.coldStartMs !== null", timeout=120_000)
        options = page.evaluate("() => [...document.querySelectorAll('#model option')].map((o) => o.value)")
        assert options == sorted(p.stem for p in model_files(folder)), url
        assert not page.locator("#face").is_hidden() and page.locator("#grid").is_hidden()
        assert missing == [], missing
        page.close()
    assert json.loads((ROOT / "demo" / "models" / "index.json").read_text()) == ModelMenu(ROOT / "demo" / "models").index()


@needs_chromium
def test_the_page_finds_a_picture_s_face_as_python_does(browser, served, tmp_path):
    """Your face in the browser: the picture read on the device, the encoder's latent and the face found
    equal Python's; a model without an encoder disables the picture input and says why."""
    from PIL import Image

    from core.pictures import read_face

    _, registry, port = served
    rng = np.random.RandomState(3)
    picture = tmp_path / "me.png"
    Image.fromarray(np.repeat(np.repeat(rng.randint(0, 255, (8, 8, 3), np.uint8), 8, 0), 8, 1)).save(picture)
    page = open_page(browser, f"http://127.0.0.1:{port}/edge/?model=generator")
    page.set_input_files("#invert-file", str(picture))
    page.wait_for_function("() => document.querySelector('#invert-info').textContent.includes('face found')",
                           timeout=60_000)
    assert not page.locator("#invert").is_hidden() and page.locator("#error").inner_text() == ""
    found = page.evaluate("() => window.edge.found")
    engine = registry.get("generator")
    z, _ = engine.invert(read_face(picture)[None])
    assert np.abs(np.array(found["z"], np.float32) - z[0]).max() < 1e-3
    face = np.array(found["face"], np.uint8).reshape(64, 64, 4)[..., :3]
    assert np.abs(face.astype(int) - engine.from_latents(z)[0].astype(int)).max() <= 2
    page.select_option("#model", "small-resnet")
    page.wait_for_function("() => document.querySelector('#invert-file').disabled")
    assert "has no encoder" in page.locator("#invert-help").inner_text()
    page.close()
