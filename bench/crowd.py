"""A crowd of hostile visitors behind a proxy, while another visitor keeps asking for faces.

    python -m bench.crowd                                   # every pattern (docs/space.md)
    python -m bench.crowd --forged 20 --grid-s 10 --morphs 6 --slow 200 --stalled 100 --settle 5   # short

The app under test trusts X-Forwarded-For as in a Space; the bench plays the proxy, which appends
the address it saw (the attacker's) to whatever the client wrote. Patterns, in turn:

- forged: visitors with a made-up first X-Forwarded-For entry, each its own session, asking for
  16x16 grids at once;
- grids: one honest address running parallel loops of 16x16 grids;
- morphs: forged visitors asking for the largest legal morphs, then a newcomer asking for one;
- pictures: one address uploading junk "pictures" of 1.9 MiB behind forged first entries, a newcomer
  finding a face from a picture, then many addresses uploading one each;
- slow: sockets sending request headers one byte every few seconds, and chunked bodies that stall;
- malformed: unknown function indices, too few inputs, plain-HTTP calls with the old inputs.

Prints one JSON line: per pattern what was taken and refused and the other visitor's face latency
(p50, p95, refusals) during it; the server's memory at the start, its peak and after settling; and
how many tracebacks the server logged.
"""
from __future__ import annotations

import argparse
import json
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.hostile import Poller
from bench.load import PeakRSS, hosted_app, percentile, rss_mb, settled_rss
from core.system import cpu_name

ATTACKER = "198.51.100.66"   # the address the proxy appends for the attacker (a documentation address)


def client(url: str, first: str | None = None, address: str = ATTACKER):
    from gradio_client import Client

    forwarded = f"{first}, {address}" if first else address
    return Client(url, verbose=False, download_files=tempfile.gettempdir(), headers={"X-Forwarded-For": forwarded})


def settle_jobs(jobs: list, timeout: float = 600) -> dict:
    done = refused = failed = 0
    for j in jobs:
        try:
            j.result(timeout=timeout)
            done += 1
        except Exception as exc:  # noqa: BLE001 - refusals are the expected answer for most
            text = str(exc)
            refused += "Busy" in text or "queue is full" in text.lower()
            failed += not ("Busy" in text or "queue is full" in text.lower())
    return {"submitted": len(jobs), "done": done, "refused": refused, "failed": failed}


def forged(url: str, n: int) -> dict:
    clients = [client(url, f"10.{i // 250}.{i % 250}.7" if i % 2 else f"203.0.{i % 250}.{i // 250 + 1}") for i in range(n)]
    return settle_jobs([c.submit(i * 256, 16, 16, 1.0, api_name="/grid") for i, c in enumerate(clients)])


def grid_loops(url: str, loops: int, seconds: float) -> dict:
    stop, counts = time.time() + seconds, {"done": 0, "refused": 0}

    def loop(k: int) -> None:
        c = client(url, address="192.0.2.10")
        while time.time() < stop:
            try:
                c.predict(k * 1000, 16, 16, 1.0, api_name="/grid")
                counts["done"] += 1
            except Exception:  # noqa: BLE001 - a refusal: try again
                counts["refused"] += 1
                time.sleep(0.2)
    with ThreadPoolExecutor(loops) as pool:
        list(pool.map(loop, range(loops)))
    return {"loops": loops, "seconds": seconds, **counts}


def morph_flood(url: str, n: int) -> dict:
    seeds = ",".join(str(s) for s in range(16))
    jobs = [client(url, f"203.0.113.{i + 1}").submit(seeds, 16, "gif", 1.0, api_name="/morph") for i in range(n)]
    time.sleep(2.0)
    newcomer = client(url, address="192.0.2.77")
    try:
        newcomer.predict("3,7", 8, "gif", 1.0, api_name="/morph")
        other = "done"
    except Exception as exc:  # noqa: BLE001
        other = f"refused: {str(exc)[:100]}"
    return {**settle_jobs(jobs), "newcomer_morph": other}


def pictures(url: str, n: int, spread: int, cache: Path) -> dict:
    """Upload floods: n from one address (forged first entries), then one each from `spread` addresses;
    between them a newcomer finds a face from a real picture."""
    import collections
    import os

    import httpx
    from gradio_client import handle_file

    junk = b"\x89PNG" + os.urandom(19 * 2**20 // 10)

    def upload(first: str, address: str) -> int:
        return httpx.post(url + "gradio_api/upload", files={"files": ("me.png", junk)}, timeout=60,
                          headers={"X-Forwarded-For": f"{first}, {address}"}).status_code
    one = collections.Counter(upload(f"10.9.{i % 250}.1", ATTACKER) for i in range(n))
    try:
        client(url, address="192.0.2.88").predict(handle_file(str(_picture())), "morph", None, 7, api_name="/invert")
        newcomer = "done"
    except Exception as exc:  # noqa: BLE001
        newcomer = f"refused: {str(exc)[:100]}"
    many = collections.Counter(upload("10.9.0.1", f"198.51.100.{i % 250 + 1}") for i in range(spread))
    stored = sum(1 for f in cache.rglob("me.png") if f.is_file())
    return {"one_address": {"sent": n, "statuses": dict(one)}, "newcomer_face_found": newcomer,
            "spread": {"sent": spread, "statuses": dict(many)}, "mib_each": 1.9, "unread_uploads_stored": stored}


def slow_clients(url: str, sockets: int, stalled: int, watch_s: float, pid: int) -> dict:
    host, port = url.split("//")[1].rstrip("/").split(":")
    port = int(port)
    slow = []
    for _ in range(sockets):
        try:
            s = socket.create_connection((host, port), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            slow.append(s)
        except OSError:
            pass
    bodies = []
    chunk = b"%x\r\n%s\r\n" % (60 * 1024, b"x" * 60 * 1024)
    for _ in range(stalled):
        try:
            s = socket.create_connection((host, port), timeout=5)
            s.sendall(b"POST /gradio_api/call/face HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                      b"transfer-encoding: chunked\r\n\r\n" + chunk)
            bodies.append(s)
        except OSError:
            pass
    rss_during = rss_mb(pid)
    end = time.time() + watch_s
    while time.time() < end:  # one byte every 3 s, as a slowloris client sends them
        for s in slow:
            try:
                s.sendall(b"X")
            except OSError:
                pass
        time.sleep(3)

    result = {"slow_header_sockets": len(slow), "still_open_after_s": watch_s,
              "slow_still_open": sum(still_open(s) for s in slow), "stalled_bodies": len(bodies),
              "stalled_still_open": sum(still_open(s) for s in bodies), "rss_mb_with_them": rss_during}
    for s in slow + bodies:
        s.close()
    return result


def still_open(s: socket.socket) -> bool:
    """Whether the server still holds this connection open (reads without waiting)."""
    s.setblocking(False)
    try:
        return s.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def malformed(url: str) -> dict:
    import httpx

    codes = {}
    for fn in (999, -1, 2**63):
        r = httpx.post(url + "gradio_api/queue/join", json={"data": [1, 1.0], "fn_index": fn, "session_hash": "x1"})
        codes[f"fn_index {fn}"] = r.status_code
    for data in ([], [42]):
        r = httpx.post(url + "gradio_api/call/face", json={"data": data})
        codes[f"/call/face {data}"] = r.status_code
    r = httpx.post(url + "gradio_api/call/face", json={"data": [42, 1.0]})  # the old number of inputs: defaults
    codes["/call/face [42, 1.0]"] = r.status_code
    if r.status_code == 200:
        event = r.json()["event_id"]
        text = httpx.get(url + f"gradio_api/call/face/{event}", timeout=60).text
        codes["/call/face [42, 1.0] result"] = "complete" if "event: complete" in text else text[:80]
    return codes


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.crowd", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="ONNX generator (default: the shipped one)")
    p.add_argument("--forged", type=int, default=80, help="forged visitors asking for 16x16 grids (default 80)")
    p.add_argument("--grid-loops", type=int, default=8, help="parallel 16x16 grid loops from one address (default 8)")
    p.add_argument("--grid-s", type=float, default=120, help="seconds of grid loops (default 120)")
    p.add_argument("--morphs", type=int, default=24, help="forged visitors asking for the largest morph (default 24)")
    p.add_argument("--pictures", type=int, default=40, help="uploads from one address (default 40)")
    p.add_argument("--spread", type=int, default=100, help="uploads from as many addresses (default 100)")
    p.add_argument("--slow", type=int, default=2000, help="sockets sending headers slowly (default 2000)")
    p.add_argument("--stalled", type=int, default=1000, help="chunked bodies stalled after 60 KiB (default 1000)")
    p.add_argument("--slow-s", type=float, default=40, help="seconds the slow sockets keep trying (default 40)")
    p.add_argument("--settle", type=float, default=12.0, help="idle seconds before the memory readings")
    p.add_argument("--alone-s", type=float, default=15.0, help="seconds the other visitor is measured alone (default 15)")
    a = p.parse_args(argv)
    from gradio_client import handle_file

    with hosted_app("anime-gan-crowd-", 120, a.model) as (server, url, cache):
        warm = client(url, address="192.0.2.1")  # one of each kind of request: the start is a warm server's
        warm.predict(1, 1.0, api_name="/face")
        warm.predict(0, 16, 16, 1.0, api_name="/grid")
        warm.predict(100, 0, 1.0, api_name="/zip")
        warm.predict("3,7", 16, "gif", 1.0, api_name="/morph")
        warm.predict(handle_file(str(_picture())), "morph", None, 7, api_name="/invert")  # loads the encoder
        start = settled_rss(server.pid, a.settle)
        phases, alone = {}, Poller(url)
        with PeakRSS(server.pid) as peak:
            with alone:
                time.sleep(a.alone_s)
            phases["alone"] = {"other_visitor": _latency(alone)}
            for name, run in (("forged", lambda: forged(url, a.forged)),
                              ("grids", lambda: grid_loops(url, a.grid_loops, a.grid_s)),
                              ("morphs", lambda: morph_flood(url, a.morphs)),
                              ("pictures", lambda: pictures(url, a.pictures, a.spread, cache)),
                              ("slow", lambda: slow_clients(url, a.slow, a.stalled, a.slow_s, server.pid)),
                              ("malformed", lambda: malformed(url))):
                with Poller(url) as other:
                    phases[name] = run()
                phases[name]["other_visitor"] = _latency(other)
                phases[name]["rss_mb_after"] = settled_rss(server.pid, min(a.settle, 5.0))
        after = settled_rss(server.pid, a.settle)
        log = (Path(tempfile.gettempdir()) / "server.log").read_text()
        result = {"rss_mb": {"start": start, "peak": peak.peak, "after": after, "after_vs_start": round(after / start - 1, 3)},
                  **phases, "tracebacks_logged": log.count("Traceback"),
                  "files_left": sum(1 for f in cache.rglob("*") if f.is_file()), "cpu": cpu_name()}
    print(json.dumps(result))
    return result


def _picture() -> Path:
    """A small plain picture for the Your face requests."""
    from PIL import Image

    picture = Path(tempfile.mkdtemp(prefix="anime-gan-crowd-")) / "face.png"
    Image.new("RGB", (128, 128), (230, 180, 160)).save(picture)
    return picture


def _latency(p: Poller) -> dict:
    refused = sum("queue is full" in f.lower() or "Busy" in f for f in p.failures)
    return {"faces": len(p.latency), "failures": len(p.failures), "refused": refused,
            "p50_s": percentile(p.latency, 50), "p95_s": percentile(p.latency, 95)}


if __name__ == "__main__":
    main()
