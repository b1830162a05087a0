"""A hostile visitor against the app on loopback, while another visitor keeps asking for faces.

    python -m bench.hostile                              # the full run (docs/space.md)
    python -m bench.hostile --zips 6 --zip-count 200 --bodies 3 --body-mib 8 --uploads 2 --upload-mib 20 \\
        --flood 20                                        # the short version the tests run

In turn: a cancel storm (zips submitted, then cancelled 0.3 s apart), huge request bodies, large
uploads, and one client submitting many zips at once. A second client asks for a single face every
half second throughout and must always get it. Reports one JSON line: server memory at the start,
its peak, and after the requests end (settled); how each attack was answered; the polling visitor's
failures and latency.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time

from bench.load import PeakRSS, hosted_app, percentile, settled_rss
from core.system import cpu_name

# The app under test trusts X-Forwarded-For (as in a Space): the hostile client and the other
# visitor are two addresses, so the per-visitor bounds are tested, not one address shared by both.
HOSTILE = {"X-Forwarded-For": "198.51.100.66"}
VISITOR = {"X-Forwarded-For": "203.0.113.9"}


class Poller:
    """Another visitor: one face every `every` seconds; every failure counts."""

    def __init__(self, url: str, every: float = 0.5):
        from gradio_client import Client

        self.client = Client(url, verbose=False, download_files=tempfile.gettempdir(), headers=VISITOR)
        self.every = every
        self.latency: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        seed = 0
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                self.client.predict(seed, 1.0, api_name="/face")
                self.latency.append(time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001 - every failure of the other visitor counts
                self.failures.append(f"{type(exc).__name__}: {str(exc)[:120]}")
            seed += 1
            self._stop.wait(self.every)

    def __enter__(self) -> "Poller":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def cancel_storm(url: str, zips: int, count: int) -> dict:
    from gradio_client import Client

    c = Client(url, verbose=False, download_files=tempfile.gettempdir(), headers=HOSTILE)
    jobs = [c.submit(count, 5000 + i, 1.0, api_name="/zip") for i in range(zips)]
    time.sleep(2.0)
    for j in jobs:
        j.cancel()
        time.sleep(0.3)
    return {"submitted": zips, "faces_each": count}


def huge_bodies(url: str, n: int, mib: int) -> dict:
    import httpx

    payload = json.dumps({"data": [42, 1.0, "hair_blonde=1", "x" * (mib * 2**20)]})
    codes = [httpx.post(url + "gradio_api/call/steer", content=payload, timeout=120,
                        headers={"content-type": "application/json"}).status_code for _ in range(n)]
    return {"sent": n, "mib_each": mib, "statuses": sorted(set(codes))}


def uploads(url: str, n: int, mib: int) -> dict:
    import httpx

    blob = b"\0" * (mib * 2**20)
    codes = [httpx.post(url + "gradio_api/upload", files={"files": ("big.bin", blob)}, timeout=120).status_code
             for _ in range(n)]
    return {"sent": n, "mib_each": mib, "statuses": sorted(set(codes))}


def flood(url: str, n: int, count: int) -> dict:
    """One client submits n zips at once; how many the server took, and how many it turned away."""
    from gradio_client import Client

    c = Client(url, verbose=False, download_files=tempfile.gettempdir(), headers=HOSTILE)
    jobs = [c.submit(count, 9000 + i, 1.0, api_name="/zip") for i in range(n)]
    taken = refused = 0
    for j in jobs:
        try:
            j.result(timeout=600)
            taken += 1
        except Exception as exc:  # noqa: BLE001 - a refusal is the expected answer for most
            refused += "Busy" in str(exc) or "queue" in str(exc).lower()
    return {"submitted": n, "done": taken, "refused_busy": refused}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.hostile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="ONNX generator (default: the shipped one)")
    p.add_argument("--zips", type=int, default=10, help="cancel storm: zips submitted then cancelled (default 10)")
    p.add_argument("--zip-count", type=int, default=1000, help="faces per zip (default 1000)")
    p.add_argument("--bodies", type=int, default=25, help="huge bodies sent (default 25)")
    p.add_argument("--body-mib", type=int, default=64, help="MiB per body (default 64)")
    p.add_argument("--uploads", type=int, default=3, help="uploads tried (default 3)")
    p.add_argument("--upload-mib", type=int, default=200, help="MiB per upload (default 200)")
    p.add_argument("--flood", type=int, default=70, help="zips one client submits at once (default 70)")
    p.add_argument("--settle", type=float, default=12.0, help="idle seconds before the memory readings")
    a = p.parse_args(argv)
    with hosted_app("anime-gan-hostile-", 600, a.model) as (server, url, cache):
        from gradio_client import Client

        warm = Client(url, verbose=False, download_files=tempfile.gettempdir())
        warm.predict(1, 1.0, api_name="/face")
        warm.predict(10, 0, 1.0, api_name="/zip")
        start = settled_rss(server.pid, a.settle)
        with PeakRSS(server.pid) as peak, Poller(url) as other:
            attacks = {"cancel_storm": cancel_storm(url, a.zips, a.zip_count),
                       "huge_bodies": huge_bodies(url, a.bodies, a.body_mib),
                       "uploads": uploads(url, a.uploads, a.upload_mib),
                       "flood": flood(url, a.flood, a.zip_count)}
            time.sleep(1.0)
        after = settled_rss(server.pid, a.settle)
        stored = [f for f in cache.rglob("*") if f.is_file() and f.stat().st_size >= 2**20 and f.suffix != ".zip"]
        result = {"rss_mb": {"start": start, "peak": peak.peak, "after": after, "after_vs_start": round(after / start - 1, 3)},
                  **attacks, "uploaded_files_stored": len(stored),
                  "other_visitor": {"faces": len(other.latency), "failures": len(other.failures),
                                    "failure_samples": other.failures[:3], "p50_s": percentile(other.latency, 50),
                                    "p95_s": percentile(other.latency, 95)},
                  "cpu": cpu_name()}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
