"""The in-browser page against the Python runtime on this machine: page weight, cold start to the
first face, and faces per second at batch 1 and 16 in headless Chromium (Debian's, via Playwright).

    python -m bench.edge_speed                     # generator-w64, the page's default model
    python -m bench.edge_speed --model generator --seconds 3 --shot docs/edge.png
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import shutil
import threading
import time
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]

from core.ort import open_session
from core.seeds import latents
from core.system import cpu_name, free_port
from runtime.settings import models_dir

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's; Playwright never downloads one here
# Headless, no GPU, and no background connections (this machine's network is closed).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def static_server(folder: Path = ROOT / "demo") -> Iterator[str]:
    """`python -m http.server -d demo` in a thread: demo/web/ and demo/models/ side by side; yields its URL."""
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()


def python_rate(model: Path, batch: int, seconds: float, threads: int = 0) -> float:
    """Faces/s of onnxruntime in Python on this CPU (threads 0 = onnxruntime's default: all cores)."""
    session = open_session(model, "cpu", threads=threads).session
    z = {session.get_inputs()[0].name: latents(range(batch), session.get_inputs()[0].shape[1])}
    session.run(None, z)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        session.run(None, z)
        n += batch
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> dict:
    from playwright.sync_api import sync_playwright

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="generator-w64")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--shot", type=Path, help="also save a screenshot of the page")
    a = p.parse_args(argv)
    web = ROOT / "demo" / "web"
    weight = {"js": sum(f.stat().st_size for f in [web / "app.js", web / "latents.js", web / "index.html",
                                                    web / "vendor" / "ort.wasm.bundle.min.mjs"]),
              "wasm_gz": (web / "vendor" / "ort-wasm-simd-threaded.wasm.gz").stat().st_size,
              "model": (models_dir() / f"{a.model}.onnx").stat().st_size}
    with static_server() as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 1300})
        page.goto(f"{url}/web/?model={a.model}")
        page.wait_for_function("() => window.edge && window.edge.coldStartMs !== null", timeout=120_000)
        cold = page.evaluate("() => window.edge.coldStartMs")
        backend = page.evaluate("() => window.edge.backend()")
        rates = {b: page.evaluate(f"() => window.edge.bench({b}, {a.seconds})") for b in (1, 16)}
        if a.shot:
            page.click("#grid-go")
            page.wait_for_function("() => document.querySelector('#grid-info').textContent.includes('faces')")
            page.screenshot(path=str(a.shot), full_page=True)
        browser.close()
    model = models_dir() / f"{a.model}.onnx"
    result = {"model": a.model, "cpu": cpu_name(), "backend": backend, "page_bytes": weight,
              "cold_start_ms": round(cold), "browser_faces_per_s": {str(b): round(r, 1) for b, r in rates.items()},
              "python_faces_per_s": {str(b): round(python_rate(model, b, a.seconds), 1) for b in (1, 16)},
              "python_one_thread_faces_per_s": {str(b): round(python_rate(model, b, a.seconds, 1), 1) for b in (1, 16)}}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
