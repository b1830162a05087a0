"""Generate anime faces from the command line with the shipped ONNX generator (no PyTorch needed).

examples:
  python demo/generate.py                                  # seeds 0-999 -> faces.zip (1,000 faces)
  python demo/generate.py --seeds 1,5,9-12 --out faces/    # PNGs into a folder
  python demo/generate.py --count 64 --start 100 --grid 8x8 --out grid.png
  python demo/generate.py --seeds 42 --out face.png --upscale 4
  python demo/generate.py --morph 3,7,11 --frames 30 --out morph.gif
  python demo/generate.py --model my.onnx --device cuda --batch-size 256 --psi 0.7
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from demo.engine import (Engine, EngineError, check_psi, distinct, parse_seeds, png_batch,  # noqa: E402
                         save_animation, seed_filename, upscale)

MAX_CLI_SEEDS = 1_000_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python demo/generate.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", help="seed list such as 0-999 or 1,5,9-12 (default 0-999)")
    p.add_argument("--count", type=int, help="number of faces from --start (instead of --seeds), e.g. --count 64")
    p.add_argument("--start", type=int, default=0, help="first seed for --count (default 0)")
    p.add_argument("--out", default=None,
                   help="faces.zip (default), a folder/ for PNGs, grid.png with --grid, face.png for one seed, "
                        "or morph.gif/.webp with --morph")
    p.add_argument("--grid", help="ROWSxCOLS, e.g. 8x8: one grid image instead of separate faces")
    p.add_argument("--morph", help="seeds to morph between in order, e.g. 3,7 or 3,7,11")
    p.add_argument("--frames", type=int, default=30, help="frames per morph step (2-120, default 30)")
    p.add_argument("--fps", type=int, default=15, help="morph frames per second (default 15)")
    p.add_argument("--psi", type=float, default=1.0, help="truncation: scale z toward 0, in (0, 2]; 1 = off (default)")
    p.add_argument("--upscale", type=int, default=1, help="also enlarge single images/grids N times, nearest (default 1)")
    p.add_argument("--model", help="ONNX generator (default: $ANIME_GAN_MODEL or demo/models/generator.onnx)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="execution provider (default auto)")
    p.add_argument("--batch-size", type=int, default=64, help="latents per generator call (default 64)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def pick_seeds(a: argparse.Namespace) -> list[int]:
    if a.seeds and a.count is not None:
        raise EngineError("use either --seeds or --count/--start, not both")
    if a.count is not None:
        if not 1 <= a.count <= MAX_CLI_SEEDS:
            raise EngineError(f"--count must be in 1..{MAX_CLI_SEEDS}")
        return parse_seeds(f"{a.start}-{a.start + a.count - 1}", MAX_CLI_SEEDS)
    return parse_seeds(a.seeds or "0-999", MAX_CLI_SEEDS)


def parse_grid(spec: str) -> tuple[int, int]:
    try:
        rows, cols = (int(x) for x in spec.lower().split("x"))
    except ValueError:
        raise EngineError(f"--grid must look like 8x8, got {spec!r}") from None
    if not (1 <= rows <= 64 and 1 <= cols <= 64):
        raise EngineError("--grid rows and columns must be in 1..64")
    return rows, cols


def check_out(path: Path, suffixes: tuple[str, ...] | None) -> Path:
    """The one path the user named, checked before any work: right kind, writable parent folder."""
    if suffixes and path.suffix.lower() not in suffixes:
        raise EngineError(f"--out must end in {' or '.join(suffixes)} here, got {str(path)!r}")
    parent = path.parent if suffixes else path
    if not suffixes:
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EngineError(f"cannot create folder {parent}: {exc.strerror}") from None
    if not parent.is_dir():
        raise EngineError(f"folder does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise EngineError(f"cannot write to {parent}")
    if suffixes and path.is_dir():
        raise EngineError(f"--out {path} is a folder")
    return path


def progress_bar(total: int, quiet: bool, desc: str):
    from tqdm import tqdm  # tqdm is small and optional; without it there is no bar

    bar = tqdm(total=total, unit="img", desc=desc, disable=quiet)

    def update(done: int, _total: int) -> None:
        bar.update(done - bar.n)
    return bar, update


def run(a: argparse.Namespace) -> int:
    psi = check_psi(a.psi)
    if a.batch_size < 1 or a.batch_size > 4096:
        raise EngineError("--batch-size must be in 1..4096")
    if a.morph:
        if not 2 <= a.frames <= 120:
            raise EngineError("--frames must be in 2..120")
        seeds = parse_seeds(a.morph, 64)
        out = check_out(Path(a.out or "morph.gif"), (".gif", ".webp"))
    else:
        seeds = pick_seeds(a)
        default = "grid.png" if a.grid else ("face.png" if len(seeds) == 1 else "faces.zip")
        out = Path(a.out or default)
        if a.grid:
            out = check_out(out, (".png",))
        elif out.suffix.lower() == ".zip":
            out = check_out(out, (".zip",))
        elif out.suffix.lower() == ".png":
            if len(seeds) != 1:
                raise EngineError("--out *.png takes one seed, or --grid RxC; use a .zip or a folder for many")
            out = check_out(out, (".png",))
        elif out.suffix:
            raise EngineError(f"--out must be a .zip, a .png or a folder, got {str(out)!r}")
        else:
            out = check_out(out, None)
    engine = Engine.load(a.model, a.device)
    print(f"model: {engine.model_path} (z_dim {engine.z_dim}, sha256 {engine.sha256[:12]})")
    print(f"provider: {engine.provider}" + (f" ({engine.provider_note})" if engine.provider != "CUDA" else ""))
    t0 = time.perf_counter()
    if a.morph:
        frames = engine.morph(seeds, a.frames, psi)
        save_animation(frames, out, fps=a.fps)
        print(f"morph {a.morph}: {len(frames)} frames -> {out}")
        return 0
    if a.grid:
        rows, cols = parse_grid(a.grid)
        seeds = seeds[:rows * cols] if len(seeds) >= rows * cols else seeds
        img = engine.grid(seeds, cols, psi)
        (upscale(img, a.upscale) if a.upscale > 1 else img).save(out)
        print(f"grid {rows}x{cols} of seeds {seeds[0]}..{seeds[-1]} -> {out}")
        return 0
    bar, update = progress_bar(len(seeds), a.quiet or len(seeds) < 2, "faces")
    if out.suffix.lower() == ".zip":
        r = engine.write_zip(seeds, out, psi, a.batch_size, update)
        count, n_distinct, seconds = r["count"], r["distinct"], r["seconds"]
    else:
        images = engine.faces(seeds, psi, a.batch_size, update)
        if out.suffix.lower() == ".png":
            img = engine.face(seeds[0], psi)
            (upscale(img, a.upscale) if a.upscale > 1 else img).save(out)
        else:
            for s, data in zip(seeds, png_batch(images)):
                (out / seed_filename(s)).write_bytes(data)
        count, n_distinct, seconds = len(images), distinct(images), time.perf_counter() - t0
    bar.close()
    print(f"{count} faces, {n_distinct} distinct of {count}, {count / max(seconds, 1e-9):.0f} images/s "
          f"({seconds:.2f} s) -> {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(parse_args(argv))
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
