"""Load test of the app on loopback: many gradio_client users for a fixed time.

    python bench/load.py                         # 32 users, 60 s, shipped model, CPU
    python bench/load.py --users 4 --seconds 5   # the short version the tests run

Starts demo/app.py on 127.0.0.1 (a free port), drives it with a mix of single faces (most),
grids, morphs and 1,000-image zips, then waits for the app's file clean-up and reports one JSON
line: requests, errors, latency percentiles per endpoint, single-face p95 while zips run,
server memory (start, peak, end), temporary files left and how long clean-up took after the
last request (expected: the file lifetime plus one sweep interval).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MIX = [("face", 0.7), ("grid", 0.1), ("morph", 0.1), ("zip", 0.1)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def count_files(*dirs: Path) -> int:
    return sum(1 for d in dirs if d.is_dir() for p in d.rglob("*") if p.is_file())


def describe_files(*dirs: Path) -> list[str]:
    """Left-over files with their age by mtime and ctime, to tell a missed sweep from a skewed clock."""
    now, out = time.time(), []
    for d in dirs:
        for f in (f for f in d.rglob("*") if f.is_file()) if d.is_dir() else ():
            try:
                st = f.stat()
            except OSError:
                continue
            out.append(f"{f.relative_to(d.parent)} mtime {now - st.st_mtime:.1f}s ctime {now - st.st_ctime:.1f}s ago")
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=32)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--model", help="ONNX generator (default: the shipped one)")
    p.add_argument("--zip-count", type=int, default=1000, help="faces per zip request (default 1000)")
    p.add_argument("--ttl", type=int, default=20, help="file lifetime given to the app, seconds (default 20)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if not (1 <= a.users <= 256 and 0 < a.seconds <= 600):
        p.error("users must be 1..256 and seconds 0..600")
    from gradio_client import Client

    tmp = Path(tempfile.mkdtemp(prefix="anime-gan-load-"))
    work, cache = tmp / "work", tmp / "gradio"
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "ANIME_GAN_FILE_TTL": str(a.ttl), "ANIME_GAN_WORKDIR": str(work), "GRADIO_TEMP_DIR": str(cache),
           "ANIME_GAN_DEVICE": "cpu", "ANIME_GAN_QUEUE": str(max(64, 4 * a.users)), "GRADIO_ANALYTICS_ENABLED": "False"}
    if a.model:
        env["ANIME_GAN_MODEL"] = str(Path(a.model).resolve())
    server = subprocess.Popen([sys.executable, str(ROOT / "demo" / "app.py")], env=env, cwd=tmp,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 120
        while True:
            if server.poll() is not None:
                raise SystemExit(f"app exited: {server.stdout.read()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit("app did not start within 120 s")
                time.sleep(0.3)
        time.sleep(1.0)
        mem = {"start": rss_mb(server.pid), "peak": 0.0}
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                mem["peak"] = max(mem["peak"], rss_mb(server.pid))
                time.sleep(0.25)
        threading.Thread(target=watch, daemon=True).start()

        lat: dict[str, list[float]] = {k: [] for k, _ in MIX}
        face_during_zip: list[float] = []
        errors: list[str] = []
        zips_running = [0]
        lock = threading.Lock()
        end = time.time() + a.seconds

        def user(i: int) -> None:
            rng = random.Random(a.seed * 1000 + i)
            client = Client(url, verbose=False)
            while time.time() < end:
                kind = rng.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
                seed = rng.randrange(0, 2**32 - a.zip_count)
                with lock:
                    zip_live = zips_running[0] > 0
                    if kind == "zip":
                        zips_running[0] += 1
                t0 = time.perf_counter()
                try:
                    if kind == "face":
                        client.predict(seed, 1.0, api_name="/face")
                    elif kind == "grid":
                        client.predict(seed, 4, 4, 1.0, api_name="/grid")
                    elif kind == "morph":
                        client.predict(f"{seed},{seed + 1}", 8, "gif", 1.0, api_name="/morph")
                    else:
                        client.predict(a.zip_count, seed, 1.0, api_name="/zip")
                    dt = time.perf_counter() - t0
                    with lock:
                        lat[kind].append(dt)
                        if kind == "face" and zip_live:
                            face_during_zip.append(dt)
                except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                    with lock:
                        errors.append(f"{kind}: {type(exc).__name__}: {str(exc)[:120]}")
                finally:
                    if kind == "zip":
                        with lock:
                            zips_running[0] -= 1

        threads = [threading.Thread(target=user, args=(i,)) for i in range(a.users)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # Files must go within the lifetime plus a sweep interval; poll well beyond that so a slow
        # or clock-skewed machine reports how long clean-up really took instead of failing at once.
        t_idle = time.time()
        expected = a.ttl + max(2, a.ttl // 3)
        while count_files(work, cache) and time.time() < t_idle + expected + 60:
            time.sleep(0.5)
        cleanup_s = round(time.time() - t_idle, 1)
        stop.set()
        mem_end = rss_mb(server.pid)
        files_left = count_files(work, cache)
        result = {
            "users": a.users, "seconds": a.seconds, "requests": sum(len(v) for v in lat.values()) + len(errors),
            "errors": len(errors), "error_samples": errors[:5],
            "latency_s": {k: {"n": len(v), "p50": percentile(v, 50), "p95": percentile(v, 95), "p99": percentile(v, 99)}
                          for k, v in lat.items()},
            "face_p95_during_zip_s": percentile(face_during_zip, 95), "face_n_during_zip": len(face_during_zip),
            "rss_mb": {"start": mem["start"], "peak": mem["peak"], "end": mem_end},
            "temp_files_left": files_left, "cleanup_s": cleanup_s, "cleanup_expected_s": expected,
            "files_left_sample": describe_files(work, cache)[:5], "cpu": _cpu_name(),
        }
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    print(json.dumps(result))
    return result


def _cpu_name() -> str:
    import torch

    from trainer.train import hardware_name
    return hardware_name(torch.device("cpu"))


if __name__ == "__main__":
    main()
