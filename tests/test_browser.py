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
        page.wait_for_function("() => document.querySelector('#caption').innerText.includes('Seed 42')",
                               timeout=30_000)  # the face the page opens with
        page.click("#random")
        # The random seed's face has come back (its seed in the box and in the caption), not just any face.
        page.wait_for_function("() => { const s = document.querySelector('#seed input').value; return s !== '42' "
                               "&& document.querySelector('#caption').innerText.includes('Seed ' + String(Number(s))); }",
                               timeout=30_000)
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


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_ui_answers_as_people_expect(served):
    """Steer shows the seed's face at once; Enter in the seed box generates; a model switch refreshes
    the face, shows the class menu for a conditional model and marks the other tabs stale; the morph
    frames fit a 1280 px window; nothing covers the strip's faces."""
    from playwright.sync_api import sync_playwright

    _, _, port = served
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
        page.wait_for_function("() => document.querySelector('#caption').innerText.includes('Seed 42')",
                               timeout=30_000)  # the Face tab's face is there before any click
        page.get_by_role("tab", name="Steer", exact=True).click()
        page.wait_for_selector("#steered img", timeout=30_000)  # before any slider moves
        page.click("#strip-go")
        page.wait_for_selector("#strip img", timeout=30_000)
        # No label and no icons over the strip's first and last faces.
        assert page.locator("#strip label:visible").count() == 0
        assert page.locator("#strip .icon-button-wrapper button").count() == 0
        page.get_by_role("tab", name="Face", exact=True).click()
        page.fill("#seed input", "7")
        page.press("#seed input", "Enter")
        page.wait_for_function("() => document.querySelector('#caption').innerText.includes('Seed 7')",
                               timeout=30_000)
        before = page.locator("#face img").get_attribute("src")
        assert not page.locator("#class-face").is_visible()  # the default model has no classes
        page.get_by_role("tab", name="Grid", exact=True).click()
        page.click("#grid-go")
        page.wait_for_function("() => document.querySelector('#grid-note').innerText.includes('holds seed')",
                               timeout=30_000)
        page.get_by_role("tab", name="Face", exact=True).click()
        page.click("#model input")
        page.get_by_role("option", name="Tiny conditional (test)").click()
        page.wait_for_function(f"() => document.querySelector('#face img') && "
                               f"document.querySelector('#face img').src !== {before!r}", timeout=30_000)
        page.wait_for_selector("#class-face", state="visible", timeout=30_000)
        page.click("#class-face input")
        page.get_by_role("option", name="blue").click()
        page.click("#generate")
        page.wait_for_function("() => document.querySelector('#caption').innerText.includes('class blue')",
                               timeout=30_000)
        page.click("#model input")  # back to a model without classes: the class resets, no error
        page.get_by_role("option", name="Tiny default (test)").click()
        page.wait_for_selector("#class-face", state="hidden", timeout=30_000)
        page.wait_for_function("() => !document.querySelector('#caption').innerText.includes('class')",
                               timeout=30_000)
        assert page.get_by_text("this model has no classes").count() == 0
        page.click("#model input")
        page.get_by_role("option", name="Tiny conditional (test)").click()
        page.wait_for_selector("#class-face", state="visible", timeout=30_000)
        page.get_by_role("tab", name="Grid", exact=True).click()
        page.wait_for_function("() => document.querySelector('#grid-note').innerText.includes('model changed')",
                               timeout=30_000)
        page.get_by_role("tab", name="Morph", exact=True).click()
        page.click("#morph")
        page.wait_for_function("() => document.querySelector('#morph-note').innerText.includes('Morph of seeds')",
                               timeout=60_000)  # a caption of what was made
        assert page.locator("#grid-note").count() == 1 and page.locator(".gallery").count() == 0  # no gallery
        browser.close()
