"""Generator throughput, side by side in one run on this machine: PyTorch eager against
onnxruntime (fp32, fp16, int8) at batch 1, 64 and 1,000, file sizes, and the 1,000-face zip
against the bare onnxruntime time for the same latents.

    python -m bench.generator_speed                          # a random DCGAN G of width 64
    python -m bench.generator_speed --checkpoint runs/best   # a trained run
    python -m bench.generator_speed --arch resnet --g-width 32 --z-dim 128   # the resnet recipe's G
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


import torch

from core.seeds import latents
from core.system import cpu_name
from runtime.engine import Engine
from runtime.writers import write_zip
from export import onnx_export as ox
from networks.files import load_generator
from networks import GENERATORS, build_generator, fold_batchnorm


def rate(fn, batch: int, min_seconds: float = 1.0) -> float:
    fn()  # warm-up (and the first-run allocations)
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= min_seconds or (batch >= 1000 and n >= 2):
            return n * batch / dt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="Generator.pth or run folder (default: a random G)")
    p.add_argument("--arch", default="dcgan", choices=GENERATORS.names(), help="architecture of the random G")
    p.add_argument("--g-width", type=int, default=64, help="width of the random G (default 64)")
    p.add_argument("--z-dim", type=int, default=100, help="z_dim of the random G (default 100)")
    p.add_argument("--seconds", type=float, default=1.0, help="minimum timing per cell")
    a = p.parse_args()
    if a.checkpoint:
        g, card = load_generator(a.checkpoint)
    else:
        torch.manual_seed(0)
        g = build_generator({"name": a.arch, "z_dim": a.z_dim, "g_width": a.g_width}).eval()
        card = {"arch": g.arch(), "recipe": {"name": "random"}}
    z_dim = g.z_dim
    zs = {b: latents(range(b), z_dim) for b in (1, 64, 1000)}
    n = sum(p.numel() for p in g.parameters())
    print(f"machine: {cpu_name()}; torch {torch.__version__} threads {torch.get_num_threads()}; "
          f"G {card['arch']['name']} width {card['arch'].get('g_width', '?')}, {n / 1e6:.2f} M parameters")
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = ox.to_onnx_fp32(fold_batchnorm(g), z_dim)
        paths = {}
        for v in ("fp32", "fp16", "int8"):
            res = ox.write_verified(g, ox.VARIANTS[v](fp32, z_dim, 0), v, Path(tmp) / f"g-{v}.onnx", card)
            assert res.passed, res.message
            paths[v] = res.path
        rows = []
        with torch.no_grad():
            rows.append(("PyTorch eager fp32", None, [rate(lambda b=b: g(torch.from_numpy(zs[b])), b, a.seconds)
                                                     for b in (1, 64, 1000)]))
        engines = {v: Engine.load(paths[v], "cpu") for v in paths}
        for v, e in engines.items():
            rows.append((f"onnxruntime {v}", paths[v].stat().st_size,
                         [rate(lambda b=b, e=e: e.run(zs[b]), b, a.seconds) for b in (1, 64, 1000)]))
        # For comparison: int8 as onnxruntime opens it by default (QDQ handling on: every weight is
        # dequantised on every run); core/ort.py turns that off.
        import onnxruntime as ort

        default = ort.InferenceSession(str(paths["int8"]), providers=["CPUExecutionProvider"])
        rows.append(("  int8, ort defaults", paths["int8"].stat().st_size,
                     [rate(lambda b=b: default.run(None, {"z": zs[b]}), b, a.seconds) for b in (1, 64, 1000)]))
        print(f"\n{'runtime':22} {'file MB':>8} {'b=1 img/s':>10} {'b=64 img/s':>11} {'b=1000 img/s':>13}")
        for name, size, r in rows:
            print(f"{name:22} {('%.2f' % (size / 1e6)) if size else '-':>8} {r[0]:10.0f} {r[1]:11.0f} {r[2]:13.0f}")
        e = engines["fp32"]
        z1000 = latents(range(1000), z_dim)
        t0 = time.perf_counter()
        for _ in e.batches(z1000, None, 64):
            pass
        bare = time.perf_counter() - t0
        out = Path(tmp) / "faces.zip"
        r = write_zip(e, range(1000), out, batch_size=64)
        print(f"\n1,000 faces, batch 64: bare onnxruntime {bare:.3f} s; zip end to end {r['seconds']:.3f} s "
              f"(overhead {100 * (r['seconds'] / bare - 1):.0f} %, {r['distinct']} distinct, "
              f"{out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
