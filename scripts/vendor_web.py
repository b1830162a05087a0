"""Copy onnxruntime-web's browser runtime from npm into demo/web/vendor/, where the page loads it.

    npm ci --prefix demo/web && python -m scripts.vendor_web             # WebAssembly (3.7 MB)
    npm ci --prefix demo/web && python -m scripts.vendor_web --webgpu    # also WebGPU (6.8 MB more)

The vendored files are committed, so a fresh clone's page works without npm and never needs a CDN.
The WebAssembly binary is stored gzipped (14.2 -> 3.7 MB) and unpacked in the browser with
DecompressionStream, so any static file server can serve it as it is. vendor/VERSION.json records
the version (it must equal package.json's pin) and each file's sha256.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "demo" / "web"
FILES = {"wasm": [("ort.wasm.bundle.min.mjs", False), ("ort-wasm-simd-threaded.wasm", True)],
         "webgpu": [("ort.webgpu.bundle.min.mjs", False), ("ort-wasm-simd-threaded.asyncify.wasm", True)]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--webgpu", action="store_true", help="also vendor the WebGPU build")
    a = p.parse_args(argv)
    dist = WEB / "node_modules" / "onnxruntime-web" / "dist"
    pinned = json.loads((WEB / "package.json").read_text())["dependencies"]["onnxruntime-web"]
    installed = json.loads((dist.parent / "package.json").read_text())["version"] if dist.is_dir() else None
    if installed != pinned:
        print(f"error: onnxruntime-web {pinned} is pinned but {installed or 'nothing'} is installed; "
              f"run npm ci --prefix demo/web", file=sys.stderr)
        return 2
    vendor = WEB / "vendor"
    shutil.rmtree(vendor, ignore_errors=True)
    vendor.mkdir()
    record = {"onnxruntime-web": pinned, "files": {}}
    for kind in ["wasm"] + (["webgpu"] if a.webgpu else []):
        for name, compress in FILES[kind]:
            data = (dist / name).read_bytes()
            out = vendor / (name + ".gz" if compress else name)
            out.write_bytes(gzip.compress(data, 9, mtime=0) if compress else data)
            record["files"][out.name] = {"sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
                                         "bytes": out.stat().st_size, "unpacked_bytes": len(data)}
            print(f"{out.relative_to(ROOT)}: {out.stat().st_size / 1e6:.2f} MB")
    (vendor / "VERSION.json").write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
