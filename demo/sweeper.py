"""One folder for the files the app makes, swept by age, and removed when the app stops.

It also sweeps the copies Gradio serves from its own cache. Gradio's delete_cache would do that
too, but its scheduled task iterates the live set of cached paths while request threads add to it;
under load that raises "Set changed size during iteration" once, the task dies, and the cache then
grows for the life of the server; so the app does not enable it. Ages come from a monotonic clock
kept in memory, not from file timestamps, which some file systems set from another clock.
"""
from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable


UPLOAD_TTL_S = 120  # seconds an uploaded picture that was never read may stay


class WorkDir:
    def __init__(self, root: str | Path, ttl_s: int):
        # Inside Gradio's own cache folder by default: one folder for everything, and Gradio serves
        # files from there as they are instead of copying each zip and animation once more.
        Path(root).mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix="anime-gan-app-", dir=root))
        self.ttl_s = ttl_s
        self._made: dict[Path, float] = {}
        self._by_thread: dict[int, list[Path]] = {}  # files made by a request still being answered
        self._cached: dict[str, tuple[float, float]] = {}  # Gradio copy -> (first seen, its mtime then)
        self._file_sets: list[set[str]] = []
        self._uploads: set[str] = set()
        self._keep: Callable[[], set[str]] = set
        self._lock = threading.Lock()
        self._closed = threading.Event()
        # Sweep in the background too, so files go even when nobody makes new ones.
        threading.Thread(target=self._sweeper, daemon=True, name="workdir-sweeper").start()

    def _sweeper(self) -> None:
        while not self._closed.wait(max(1.0, min(self.ttl_s, UPLOAD_TTL_S) / 3)):
            self.sweep()

    def adopt(self, file_sets: list[set[str]], keep: Callable[[], set[str]] = set,
              uploads: set[str] | None = None) -> None:
        """Also sweep the files named in Gradio's per-component cache sets, except those keep() names,
        and the visitors' uploads (a set of those) after UPLOAD_TTL_S: a picture is read at once, and
        one that never is should not hold the disk for the made files' lifetime."""
        self._uploads = uploads if uploads is not None else set()
        self._file_sets, self._keep = [*file_sets, self._uploads], keep

    def new(self, stem: str, suffix: str) -> Path:
        self.sweep()
        path = self.path / f"{stem}-{secrets.token_hex(6)}{suffix}"
        with self._lock:
            self._made[path] = time.monotonic()
            self._by_thread.setdefault(threading.get_ident(), []).append(path)
        return path

    def handed_out(self) -> None:
        """The calling thread's request is answered: its files' lifetimes start now, not when they were
        made, so a request slower than the lifetime still hands out files that can be downloaded."""
        now = time.monotonic()
        with self._lock:
            for path in self._by_thread.pop(threading.get_ident(), []):
                if path in self._made:
                    self._made[path] = now

    def sweep(self, everything: bool = False) -> int:
        """Remove files older than the TTL (all of them with everything=True); returns how many."""
        removed, now = 0, time.monotonic()
        with self._lock:
            for path in [p for p, t in self._made.items() if everything or now - t > self.ttl_s]:
                del self._made[path]
                removed += _unlink(path)
            removed += self._sweep_cached(now, everything)
        return removed

    def _sweep_cached(self, now: float, everything: bool) -> int:
        removed, live, keep = 0, set(), self._keep()
        for file_set in list(self._file_sets):
            for name in set(file_set) - keep:  # set(...) of a set is one C call: safe while threads add
                live.add(name)
                try:
                    mtime = os.stat(name).st_mtime
                except OSError:
                    file_set.discard(name)
                    continue
                first, seen_mtime = self._cached.setdefault(name, (now, mtime))
                if mtime != seen_mtime and not everything:  # Gradio touches a copy it hands out again: its life restarts
                    self._cached[name] = (now, mtime)
                elif everything or now - first > (UPLOAD_TTL_S if file_set is self._uploads else self.ttl_s):
                    removed += _unlink(Path(name))
                    if Path(name).parent != self.path:
                        _remove_empty(Path(name).parent)
                    file_set.discard(name)
                    live.discard(name)
        for name in set(self._cached) - live:
            del self._cached[name]
        return removed

    def close(self) -> None:
        """Stop sweeping and remove every file the app made or Gradio copied for it."""
        self._closed.set()
        self.sweep(everything=True)
        shutil.rmtree(self.path, ignore_errors=True)


def _unlink(path: Path) -> int:
    try:
        path.unlink()
        return 1
    except FileNotFoundError:
        return 0


def _remove_empty(folder: Path) -> None:
    """Gradio puts each cached copy in a folder of its own (named by hash): remove it when empty."""
    try:
        folder.rmdir()
    except OSError:
        pass
