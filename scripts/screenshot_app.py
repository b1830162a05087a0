"""Screenshot of the app with the shipped model for the docs (needs Debian's chromium + playwright).

    python -m scripts.screenshot_app            # -> docs/app.png, seed 42 in the Face tab
    python -m scripts.screenshot_app --picture face.png --out docs/inversion-app.png   # the Your face tab
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from bench.edge_speed import CHROMIUM, CHROMIUM_ARGS
from bench.load import start_app, stop_app


def main(out: Path = ROOT / "docs" / "app.png", seed: int = 42, picture: Path | None = None) -> None:
    from playwright.sync_api import sync_playwright

    tmp = tempfile.TemporaryDirectory(prefix="anime-gan-shot-")  # the app's work files and log
    server, url, _ = start_app(Path(tmp.name), ttl=60, users=1, model=None)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(url, wait_until="networkidle")
            if picture is None:
                page.fill("#seed input", str(seed))
                page.click("#generate")
                page.wait_for_function(f"() => document.querySelector('#face img') && "
                                       f"document.body.innerText.includes('Seed {seed}')", timeout=60_000)
            else:
                page.get_by_role("tab", name="Your face").click()
                page.set_input_files("#invert-picture input[type=file]", str(picture))
                page.wait_for_function("() => document.querySelector('#invert-picture img')", timeout=60_000)
                page.click("#invert-go")
                page.wait_for_function("() => document.querySelector('#invert-found img') && "
                                       "document.querySelector('#invert-strip img')", timeout=60_000)
            page.wait_for_timeout(500)
            page.screenshot(path=str(out), full_page=True)
            browser.close()
    finally:
        stop_app(server)
        tmp.cleanup()
    print(f"wrote {out}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m scripts.screenshot_app", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "app.png", help="the PNG (default docs/app.png)")
    p.add_argument("--seed", type=int, default=42, help="the Face tab's seed (default 42)")
    p.add_argument("--picture", type=Path, help="show the Your face tab with this picture instead")
    a = p.parse_args()
    main(a.out, a.seed, a.picture)
