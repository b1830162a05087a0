"""Keep the server's memory where it was: glibc arenas capped, freed buffers handed back.

glibc gives each worker thread its own malloc arena, and image buffers freed in one are not reused
by another; and once a large buffer is freed, glibc raises its mmap threshold, so later buffers of
that size come from the heap and stay with the process after they are freed. Measured with
bench/load.py and tests/test_memory.py: with these settings the server's memory returns to its
idle figure after the heaviest requests. No-ops outside glibc.
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading
import time

_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def tune_malloc(arenas: int = 2, mmap_threshold: int = 256 * 1024) -> bool:
    """Cap the arenas (as MALLOC_ARENA_MAX=2 would) and fix the mmap threshold, unless the user set
    either variable. Call before threads start. True when glibc took the settings."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)  # a fixed threshold: big buffers go back on free
    return "MALLOC_ARENA_MAX" not in os.environ and libc.mallopt(_M_ARENA_MAX, arenas) == 1


def release() -> None:
    """Hand freed heap memory back to the system (after a heavy request)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def start_trimmer(interval_s: float = 5.0) -> threading.Thread:
    """Trim the heap every few seconds in the background: Gradio encodes a handler's images after
    the handler returns, so a trim inside the handler comes too early to catch them."""
    def loop() -> None:
        while True:
            time.sleep(interval_s)
            release()
    thread = threading.Thread(target=loop, daemon=True, name="malloc-trim")
    thread.start()
    return thread
