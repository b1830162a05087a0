"""Facts about the machine: its CPU's name, whether an NVIDIA GPU is present, a free port."""
from __future__ import annotations

import os
import platform
import socket
import time
from pathlib import Path


def cpu_name() -> str:
    """'AMD EPYC (2 cores)' style: the model name from /proc/cpuinfo and the usable core count."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f" ({cores} cores)"
    except OSError:
        pass
    return (platform.processor() or platform.machine() or "CPU") + f" ({cores} cores)"


def nvidia_gpu_present() -> bool:
    """True when the machine has an NVIDIA GPU and driver, whatever the Python packages can do."""
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidia0").exists() or (
        platform.system() == "Windows" and Path(os.environ.get("SystemRoot", "C:/Windows"), "System32",
                                                 "nvidia-smi.exe").exists())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_start() -> float:
    """When this process started (Unix seconds): from /proc on Linux, else the first call's time (a
    time limit counted from it includes the interpreter's start and the imports)."""
    global _FIRST_CALL
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration, AttributeError):
        _FIRST_CALL = _FIRST_CALL or time.time()
        return _FIRST_CALL


_FIRST_CALL: float | None = None
