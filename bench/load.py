"""Load test of the app on loopback: many gradio_client users for a fixed time.

    python -m bench.load                         # 32 users, 60 s, shipped model, CPU
    python -m bench.load --rounds 3              # three rounds on one server: does memory settle?
    python -m bench.load --users 4 --seconds 5   # the short version the tests run
    python -m bench.load --rounds 3 --heavy 0.1  # 10 % of requests are the heaviest legal ones
    python -m bench.load --memory                # memory before and after the heaviest request of each endpoint

Starts demo/app.py on 127.0.0.1 (a free port), drives it with a mix of single faces (most),
grids, morphs and 1,000-image zips (with --heavy, that share of requests are the heaviest legal
ones instead: 241-frame morphs and 16x16 grids), then waits for the app's file clean-up and reports
one JSON line: requests, errors, latency percentiles per endpoint, single-face p95 while zips run,
server memory (start, peak, after each round), temporary files left and how long clean-up took
after the last request (expected: the file lifetime plus one sweep interval).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
from core.limits import LIMITS
from core.system import cpu_name, free_port

MIX = [("face", 0.7), ("grid", 0.1), ("morph", 0.1), ("zip", 0.1)]
KINDS = [k for k, _ in MIX] + ["heavy_grid", "heavy_morph"]
# The heaviest legal requests: a 16x16 grid, and a morph of 16 seeds with 16 frames each (241 frames).
HEAVY_GRID = (LIMITS.grid_side, LIMITS.grid_side)
HEAVY_MORPH_FRAMES = (LIMITS.morph_total_frames - 1) // (LIMITS.morph_seeds - 1)


def rss_mb(pid: int) -> float:
    """Resident memory of the server and its children (Gradio may start helpers)."""
    total = 0.0
    pids = [pid]
    try:
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return round(total, 1)


def percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))], 3)


def files_in(folder: Path) -> list[Path]:
    """Files under folder; os.walk skips folders the app removes while we look."""
    return [Path(root) / f for root, _, files in os.walk(folder) for f in files]


def describe_files(folder: Path) -> list[str]:
    """Left-over files with their age by mtime and ctime, to tell a missed sweep from a skewed clock."""
    now, out = time.time(), []
    for f in files_in(folder):
        try:
            st = f.stat()
        except OSError:
            continue
        out.append(f"{f.relative_to(folder.parent)} mtime {now - st.st_mtime:.1f}s ctime {now - st.st_ctime:.1f}s ago")
    return out


def request(client, kind: str, seed: int, zip_count: int) -> None:
    """One request of a kind, as a user of the API would make it."""
    if kind == "face":
        client.predict(seed, 1.0, api_name="/face")
    elif kind == "grid":
        client.predict(seed, 4, 4, 1.0, api_name="/grid")
    elif kind == "heavy_grid":
        client.predict(seed, *HEAVY_GRID, 1.0, api_name="/grid")
    elif kind == "morph":
        client.predict(f"{seed},{seed + 1}", 8, "gif", 1.0, api_name="/morph")
    elif kind == "heavy_morph":
        client.predict(f"{seed}-{seed + LIMITS.morph_seeds - 1}", HEAVY_MORPH_FRAMES, "gif", 1.0, api_name="/morph")
    else:
        client.predict(zip_count, seed, 1.0, api_name="/zip")


class Load:
    """Drives one running app with `users` gradio_client users; collects latencies and errors."""

    def __init__(self, url: str, zip_count: int, heavy: float = 0.0):
        self.url, self.zip_count, self.heavy = url, zip_count, heavy
        self.lat: dict[str, list[float]] = {k: [] for k in KINDS}
        self.face_during_zip: list[float] = []
        self.errors: list[str] = []
        self._zips_running = 0
        self._lock = threading.Lock()

    def run(self, users: int, seconds: float, seed: int) -> None:
        end = time.time() + seconds
        threads = [threading.Thread(target=self._user, args=(seed * 1000 + i, end)) for i in range(users)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _kind(self, rng: random.Random) -> str:
        if rng.random() < self.heavy:
            return rng.choice(["heavy_grid", "heavy_morph"])
        return rng.choices([k for k, _ in MIX], [w for _, w in MIX])[0]

    def _user(self, seed: int, end: float) -> None:
        from gradio_client import Client

        rng = random.Random(seed)
        client = Client(self.url, verbose=False, download_files=tempfile.gettempdir(),
                        headers={"X-Forwarded-For": f"10.{seed >> 16 & 255}.{seed >> 8 & 255}.{seed & 255}"})
        while time.time() < end:
            kind = self._kind(rng)
            s = rng.randrange(0, 2**32 - max(self.zip_count, 256))
            with self._lock:
                zip_live = self._zips_running > 0
                self._zips_running += kind == "zip"
            t0 = time.perf_counter()
            try:
                request(client, kind, s, self.zip_count)
                dt = time.perf_counter() - t0
                with self._lock:
                    self.lat[kind].append(dt)
                    if kind == "face" and zip_live:
                        self.face_during_zip.append(dt)
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                with self._lock:
                    self.errors.append(f"{kind}: {type(exc).__name__}: {str(exc)[:120]}")
            finally:
                with self._lock:
                    self._zips_running -= kind == "zip"

    def summary(self) -> dict:
        return {
            "requests": sum(len(v) for v in self.lat.values()) + len(self.errors),
            "errors": len(self.errors), "error_samples": self.errors[:5],
            "latency_s": {k: {"n": len(v), "p50": percentile(v, 50), "p95": percentile(v, 95), "p99": percentile(v, 99)}
                          for k, v in self.lat.items() if v},
            "face_p95_during_zip_s": percentile(self.face_during_zip, 95), "face_n_during_zip": len(self.face_during_zip),
        }


def settled_rss(pid: int, seconds: float = 12.0) -> float:
    """Resident memory after the server has been idle for `seconds` (the app trims its heap every
    5 s, and Gradio finishes sending and caching a response after the client has it)."""
    time.sleep(seconds)
    return rss_mb(pid)


class PeakRSS:
    """The highest resident memory of a process while the block runs (sampled every 50 ms)."""

    def __init__(self, pid: int):
        self.pid, self.peak = pid, rss_mb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.05)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def hosted_app(prefix: str, ttl: int, model: str | None, users: int = 4) -> Iterator[tuple[subprocess.Popen, str, Path]]:
    """The app under test in a temporary folder (its files and log, and this process's downloads),
    removed afterwards: (process, url, the app's file folder)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    previous, tempfile.tempdir = tempfile.tempdir, str(tmp)
    server, url, cache = start_app(tmp, ttl, users, model)
    try:
        yield server, url, cache
    finally:
        stop_app(server)
        shutil.rmtree(tmp, ignore_errors=True)
        tempfile.tempdir = previous


def heaviest_requests(url: str, pid: int, zip_count: int, settle_s: float = 12.0) -> dict:
    """Server memory before and after the heaviest legal request of each endpoint, one at a time.

    The idle figure is taken after one light request of each kind, so first-use costs (imports,
    encoders, thread pools) are in it; each heavy request should leave memory within 10 % of it."""
    from gradio_client import Client

    client = Client(url, verbose=False, download_files=tempfile.gettempdir())
    for kind in ("face", "grid", "morph"):
        request(client, kind, 1, zip_count)
    request(client, "zip", 1, 10)
    idle = settled_rss(pid, settle_s)
    rows = {}
    for kind in ("face", "heavy_grid", "heavy_morph", "zip"):
        with PeakRSS(pid) as peak:
            t0 = time.perf_counter()
            request(client, kind, 1000, zip_count)
            seconds = time.perf_counter() - t0
        after = settled_rss(pid, settle_s)
        rows[kind] = {"seconds": round(seconds, 2), "peak_mb": peak.peak, "after_mb": after,
                      "after_vs_idle": round(after / idle - 1, 3)}
    return {"idle_mb": idle, "requests": rows}


def start_app(tmp: Path, ttl: int, users: int, model: str | None) -> tuple[subprocess.Popen, str, Path]:
    """The app on a free loopback port with its files under tmp; returns (process, url, file folder)."""
    cache = tmp / "gradio"  # the app keeps its own files inside Gradio's cache folder too
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "ANIME_GAN_FILE_TTL": str(ttl), "GRADIO_TEMP_DIR": str(cache),
           "ANIME_GAN_DEVICE": "cpu", "ANIME_GAN_QUEUE": str(max(64, 4 * users)), "GRADIO_ANALYTICS_ENABLED": "False",
           # Each simulated user is its own visitor (as behind a Space's proxy), so the per-visitor
           # bounds apply to each, not to all of them together.
           "ANIME_GAN_TRUST_PROXY": "1"}
    if model:
        env["ANIME_GAN_MODEL"] = model if Path(model).suffix != ".onnx" else str(Path(model).resolve())
    with open(tmp / "server.log", "w") as log:  # a file, not a pipe nobody reads: a full pipe would stall the server
        server = subprocess.Popen([sys.executable, "-m", "demo.app"], env={**env, "PYTHONPATH": str(ROOT)}, cwd=tmp,
                                  stdout=log, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while True:
        if server.poll() is not None:
            raise SystemExit(f"app exited: {(tmp / 'server.log').read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, f"http://127.0.0.1:{port}/", cache
        except OSError:
            if time.time() > deadline:
                server.kill()
                raise SystemExit("app did not start within 120 s")
            time.sleep(0.3)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=32)
    p.add_argument("--seconds", type=float, default=60.0, help="length of one round (default 60)")
    p.add_argument("--rounds", type=int, default=1,
                   help="rounds on the same server, each followed by clean-up; memory after each settles is "
                        "reported, so growth from round to round shows a leak (default 1)")
    p.add_argument("--model", help="ONNX generator (default: the shipped one)")
    p.add_argument("--zip-count", type=int, default=1000, help="faces per zip request (default 1000)")
    p.add_argument("--ttl", type=int, default=20, help="file lifetime given to the app, seconds (default 20)")
    p.add_argument("--heavy", type=float, default=0.0,
                   help="share of requests that are the heaviest legal ones (241-frame morphs, 16x16 grids)")
    p.add_argument("--memory", action="store_true",
                   help="instead of a load: memory before and after the heaviest request of each endpoint")
    p.add_argument("--settle", type=float, default=12.0, help="--memory: idle seconds before each reading")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if not (1 <= a.users <= 256 and 0 < a.seconds <= 600 and 1 <= a.rounds <= 20 and 0 <= a.heavy <= 1):
        p.error("users must be 1..256, seconds 0..600, rounds 1..20 and heavy 0..1")

    tmp = Path(tempfile.mkdtemp(prefix="anime-gan-load-"))
    # gradio_client leaves an empty folder in the temporary folder for every file it downloads: keep them in ours.
    previous_tempdir, tempfile.tempdir = tempfile.tempdir, str(tmp)
    server, url, cache = start_app(tmp, a.ttl, a.users, a.model)
    try:
        time.sleep(1.0)
        mem = {"start": rss_mb(server.pid), "peak": 0.0}
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                mem["peak"] = max(mem["peak"], rss_mb(server.pid))
                time.sleep(0.25)
        threading.Thread(target=watch, daemon=True).start()

        if a.memory:
            result = {**heaviest_requests(url, server.pid, a.zip_count, a.settle), "cpu": cpu_name()}
        else:
            load = Load(url, a.zip_count, a.heavy)
            expected = a.ttl + max(2, a.ttl // 3)
            settled, cleanup = [], []
            for r in range(a.rounds):
                load.run(a.users, a.seconds, a.seed + r)
                # Files must go within the lifetime plus a sweep interval; poll well beyond that so a slow
                # or clock-skewed machine reports how long clean-up really took instead of failing at once.
                t_idle = time.time()
                while files_in(cache) and time.time() < t_idle + expected + 60:
                    time.sleep(0.5)
                cleanup.append(round(time.time() - t_idle, 1))
                settled.append(rss_mb(server.pid))
            stop.set()
            result = {
                "users": a.users, "seconds": a.seconds, "rounds": a.rounds, "heavy": a.heavy, **load.summary(),
                "rss_mb": {"start": mem["start"], "peak": mem["peak"], "end": settled[-1], "after_each_round": settled,
                           "growth_after_first_round": round(settled[-1] - settled[0], 1)},
                "temp_files_left": len(files_in(cache)), "cleanup_s": max(cleanup), "cleanup_expected_s": expected,
                "files_left_sample": describe_files(cache)[:5], "cpu": cpu_name(),
            }
    finally:
        stop_app(server)
        left_after_stop = describe_files(cache)
        shutil.rmtree(tmp, ignore_errors=True)
        tempfile.tempdir = previous_tempdir
    if not a.memory:
        result["files_left_after_stop"] = left_after_stop
    print(json.dumps(result))
    return result


def stop_app(server: subprocess.Popen) -> None:
    """SIGTERM, as a process manager would send: the app removes its files and exits."""
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
