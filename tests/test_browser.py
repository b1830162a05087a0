"""The page in headless Chromium (Debian's package, driven by Playwright): click, see a face, screenshot."""
import io
import os
from pathlib import Path

import pytest
from PIL import Image

from bench.edge_speed import CHROMIUM, CHROMIUM_ARGS

SHOT = Path(os.environ.get("SCREENSHOT_DIR", Path(__file__).resolve().parent / "artifacts"))


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_page_generates_a_face(served):
    from playwright.sync_api import sync_playwright

    _, _, port = served
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
        page.click("#random")
        page.wait_for_selector("#face img", timeout=30_000)
        seed = page.locator("#seed input").input_value()
        assert 0 <= int(float(seed)) <= 2**32 - 1
        page.fill("#seed input", "42")
        page.click("#generate")
        page.wait_for_function("() => document.querySelector('#face img') && "
                               "document.body.innerText.includes('Seed 42')", timeout=30_000)
        src = page.locator("#face img").get_attribute("src")
        img = Image.open(io.BytesIO(page.request.get(src).body()))
        assert img.size == (512, 512)  # the 64x64 face, shown 8x
        SHOT.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOT / "app.png"), full_page=True)
        browser.close()
    assert (SHOT / "app.png").stat().st_size > 10_000
