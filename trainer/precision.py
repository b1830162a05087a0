"""Which arithmetic a run trains in: bfloat16 autocast where it pays, float32 elsewhere.

    bf16, why = choose("auto", device, g, d, batch)   # (True, "bf16: 1.6x faster than fp32 here, measured")

`auto` on a CPU takes bf16 only when the CPU does bf16 in hardware (avx512_bf16 or AMX; others
emulate it, several times slower) and a probe of this run's own networks shows it faster than fp32:
some PyTorch builds run bf16 convolutions far slower on some CPUs, so the flags alone do not decide.
On CUDA `auto` is fp32 with TF32, as before; `bf16` asks for it on either device. Spectral norm's
power iteration, the penalties and the losses stay in float32 either way (networks/common.py,
trainer/objectives.py).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger("trainer")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
MIN_GAIN = 1.1  # bf16 must be this much faster than fp32 in the probe to be chosen
PROBE_ROUNDS = 3  # timed steps of each arithmetic in the probe


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU does bf16 arithmetic in hardware (Linux: its flags; elsewhere: assume not)."""
    try:
        flags = cpuinfo.read_text()
    except OSError:
        return False
    return any(f" {flag}" in flags for flag in BF16_FLAGS)


def _step_seconds(g: nn.Module, d: nn.Module, batch: int, z_dim: int, bf16: bool, n_classes: int) -> float:
    """Seconds of one forward and backward of G then D on random inputs (the weights are not changed)."""
    z = torch.randn(batch, z_dim)
    y = torch.zeros(batch, dtype=torch.long) if n_classes else None
    t0 = time.perf_counter()
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        d(g(z, y), y).float().mean().backward()
    seconds = time.perf_counter() - t0
    for net in (g, d):
        net.zero_grad(set_to_none=True)
    return seconds


def probe_gain(g: nn.Module, d: nn.Module, batch: int, z_dim: int, n_classes: int = 0) -> float:
    """fp32's step time over bf16's: the best of PROBE_ROUNDS each, after one warm-up of each."""
    best = {False: float("inf"), True: float("inf")}
    for i in range(PROBE_ROUNDS + 1):
        # Interleaved, and the best of each: a machine that is busy with something else for part of
        # the probe then slows both sides alike, instead of only the side measured in that moment.
        for bf16 in (False, True):
            seconds = _step_seconds(g, d, batch, z_dim, bf16, n_classes)
            if i:
                best[bf16] = min(best[bf16], seconds)
    return best[False] / best[True]


def choose(want: str, device: torch.device, g: nn.Module, d: nn.Module, batch: int, n_classes: int = 0) -> tuple[bool, str]:
    """(bf16 autocast on?, why) for --precision auto | bf16 | fp32."""
    if want == "fp32":
        return False, "fp32 (asked for)"
    if want == "bf16":
        return True, "bf16 (asked for)"
    if device.type == "cuda":
        return False, "fp32 with TF32 (auto on CUDA; --precision bf16 to use bf16)"
    if not cpu_has_bf16():
        return False, "fp32 (auto: this CPU has no avx512_bf16 or AMX, so bf16 would be emulated)"
    # The probe must not change the run: BatchNorm statistics and spectral norm's vectors put back.
    saved = [{k: v.clone() for k, v in net.state_dict().items()} for net in (g, d)]
    rng = torch.get_rng_state()
    try:
        gain = probe_gain(g, d, max(2, min(batch, 32)), g.z_dim, n_classes)
    finally:
        for net, state in zip((g, d), saved):
            net.load_state_dict(state)
        torch.set_rng_state(rng)
    if gain >= MIN_GAIN:
        return True, f"bf16 (auto: {gain:.2f}x faster than fp32 on this CPU, measured on this run's networks)"
    return False, f"fp32 (auto: bf16 measured {gain:.2f}x fp32's speed on this CPU, not enough to pay)"
