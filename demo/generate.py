"""Generate anime faces from the command line with the shipped ONNX generators (no PyTorch needed).

examples:
  python demo/generate.py                                  # seeds 0-999 -> faces.zip (1,000 faces)
  python demo/generate.py --seeds 1,5,9-12 --out faces/    # PNGs into a folder
  python demo/generate.py --count 64 --start 100 --grid 8x8 --out grid.png
  python demo/generate.py --seeds 42 --out face.png --upscale 4
  python demo/generate.py --morph 3,7,11 --frames 30 --out morph.gif
  python demo/generate.py --model edge-w64 --device cuda --batch-size 256 --psi 0.7
  python demo/generate.py --seeds 42 --edit hair_blonde=1.5,brightness=-1 --out blonde.png
  python demo/generate.py --list-models
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from core import limits  # noqa: E402
from core.errors import UserError, quote  # noqa: E402
from core.files import atomic_write_bytes  # noqa: E402
from core.images import (  # noqa: E402
    digest,
    png_batch,
    save_animation,
    save_png,
    seed_filename,
    upscale,
)
from core.limits import FACE, LIMITS, in_range  # noqa: E402
from core.ort import plan as providers  # noqa: E402
from core.seeds import check_psi, check_seed, check_span, parse_seeds  # noqa: E402
from demo.registry import Registry  # noqa: E402

MORPH_SCALE = 2  # morph frames are enlarged twice unless --upscale says otherwise


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python demo/generate.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", help="seed list such as 0-999 or 1,5,9-12 (default 0-999)")
    p.add_argument("--count", type=int, help="number of faces from --start (instead of --seeds), e.g. --count 64")
    p.add_argument("--start", type=int, default=0, help="first seed for --count (default 0)")
    p.add_argument("--out", default=None,
                   help="faces.zip (default), a folder/ for PNGs, grid.png with --grid, face.png for one seed, "
                        "or morph.gif/.webp with --morph; missing folders are created")
    p.add_argument("--grid", help=f"ROWSxCOLS up to {LIMITS.grid_side}x{LIMITS.grid_side}, e.g. 8x8: one grid image")
    p.add_argument("--morph", help=f"2 to {LIMITS.morph_seeds} seeds to morph between in order, e.g. 3,7,11")
    p.add_argument("--frames", type=int, default=30,
                   help=f"frames per morph step ({LIMITS.morph_frames[0]}-{LIMITS.morph_frames[1]}, "
                        f"at most {LIMITS.morph_total_frames} in all; default 30)")
    p.add_argument("--fps", type=int, default=15, help=f"morph frames per second ({LIMITS.fps[0]}-{LIMITS.fps[1]}, default 15)")
    p.add_argument("--psi", type=float, default=1.0, help="truncation: scale z toward 0, in (0, 2]; 1 = off (default)")
    p.add_argument("--upscale", type=int, help=f"enlarge single faces, grids and morphs N times, nearest "
                                               f"({LIMITS.upscale[0]}-{LIMITS.upscale[1]}, pictures at most "
                                               f"{LIMITS.picture_side} px; default 1, morphs 2)")
    p.add_argument("--edit", help=f"steer every face: NAME=STRENGTH,... along the model's directions "
                                  f"(see --list-models), strengths -{LIMITS.edit_strength:g} to {LIMITS.edit_strength:g}")
    p.add_argument("--model", help="a shipped model's name (see --list-models) or an .onnx file "
                                   "(default: $ANIME_GAN_MODEL or generator)")
    p.add_argument("--list-models", action="store_true", help="list the shipped models and exit")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="execution provider (default auto)")
    p.add_argument("--batch-size", type=int, default=64,
                   help=f"latents per generator call ({LIMITS.batch_size[0]}-{LIMITS.batch_size[1]}, default 64)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def pick_seeds(a: argparse.Namespace) -> list[int]:
    if a.seeds is not None and a.count is not None:
        raise UserError("use either --seeds or --count/--start, not both")
    if a.count is not None:
        count = in_range(a.count, "--count", 1, LIMITS.cli_faces)
        start = check_seed(a.start, "--start")
        check_span(start, count, "--start")
        return list(range(start, start + count))
    return parse_seeds("0-999" if a.seeds is None else a.seeds, LIMITS.cli_faces, "--seeds")


def parse_grid(spec: str) -> tuple[int, int]:
    """'8x8' -> (8, 8); plan() checks the sizes against the limits."""
    try:
        rows, cols = (int(x) for x in spec.lower().split("x"))
    except ValueError:
        raise UserError(f"--grid must look like 8x8, got {quote(spec)}") from None
    return rows, cols


def check_out(path: Path, suffixes: tuple[str, ...] | None) -> Path:
    """The one path the user named, checked before any work: right kind, not a folder where a file
    goes. Missing folders are created only after every check has passed (see make_room)."""
    if suffixes and path.suffix.lower() not in suffixes:
        raise UserError(f"--out must end in {' or '.join(suffixes)} here, got {quote(str(path))}")
    if suffixes and path.is_dir():
        raise UserError(f"--out {path} is a folder")
    if not suffixes and path.exists() and not path.is_dir():
        raise UserError(f"--out {path} is a file, not a folder")
    return path


def make_room(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create folder {folder}: {exc.strerror or exc}") from None


def plan(a: argparse.Namespace) -> dict:
    """Every flag checked, and the work described, before a model is loaded or a file touched."""
    psi = check_psi(a.psi, "--psi")
    providers(a.device)  # --device cuda on a machine without one fails here, before any work
    in_range(a.batch_size, "--batch-size", *LIMITS.batch_size)
    in_range(a.fps, "--fps", *LIMITS.fps)
    if a.upscale is not None:
        in_range(a.upscale, "--upscale", *LIMITS.upscale)
    if a.morph is not None:
        if a.grid or a.seeds is not None or a.count is not None:
            raise UserError("--morph takes its own seeds; leave out --seeds, --count and --grid")
        seeds = parse_seeds(a.morph, LIMITS.morph_seeds, "--morph")
        scale = MORPH_SCALE if a.upscale is None else a.upscale
        in_range(a.frames, "--frames", *LIMITS.morph_frames)
        limits.check_morph(len(seeds), a.frames, scale)
        return {"kind": "morph", "seeds": seeds, "psi": psi, "scale": scale,
                "out": check_out(Path(a.out or "morph.gif"), (".gif", ".webp"))}
    seeds = pick_seeds(a)
    scale = a.upscale or 1
    if a.grid:
        rows, cols = parse_grid(a.grid)
        limits.check_grid(rows, cols, scale)
        return {"kind": "grid", "seeds": seeds[:rows * cols], "rows": rows, "cols": cols, "psi": psi, "scale": scale,
                "out": check_out(Path(a.out or "grid.png"), (".png",))}
    out = Path(a.out or ("face.png" if len(seeds) == 1 else "faces.zip"))
    if out.suffix.lower() == ".png":
        if len(seeds) != 1:
            raise UserError("--out *.png takes one seed, or --grid RxC; use a .zip or a folder for many")
        limits.check_picture(FACE, FACE, scale)
        return {"kind": "face", "seeds": seeds, "psi": psi, "scale": scale, "out": check_out(out, (".png",))}
    if a.upscale is not None and a.upscale != 1:
        raise UserError("--upscale applies to one face, a grid or a morph, not to zips and folders")
    if out.suffix.lower() == ".zip":
        return {"kind": "zip", "seeds": seeds, "psi": psi, "out": check_out(out, (".zip",))}
    if out.suffix:
        raise UserError(f"--out must be a .zip, a .png or a folder, got {quote(str(out))}")
    return {"kind": "folder", "seeds": seeds, "psi": psi, "out": check_out(out, None)}


def progress_bar(total: int, quiet: bool, desc: str):
    from tqdm import tqdm  # a dependency of the runtime (requirements.txt)

    bar = tqdm(total=total, unit="img", desc=desc, disable=quiet)

    def update(done: int, _total: int) -> None:
        bar.update(done - bar.n)
    return bar, update


def run(a: argparse.Namespace) -> int:
    registry = Registry(device=a.device, default=a.model)
    if a.list_models:
        for name in registry.names():
            e = registry.entries[name]
            print(f"{name:16} {e.path.stat().st_size / 1e6 if e.path.is_file() else 0:6.1f} MB  {e.label}")
            try:
                d = registry.get(name).directions
                print(f"{'':16} directions: {', '.join(d.names) if d else 'none'}")
            except UserError as exc:
                print(f"{'':16} {exc}")
        return 0
    job = plan(a)
    engine = registry.get()
    where = "" if registry.default == str(engine.model_path) else f" = {engine.model_path}"
    print(f"model: {registry.default}{where} (z_dim {engine.z_dim}, sha256 {engine.sha256[:12]})")
    print(f"provider: {engine.provider}" + (f" ({engine.provider_note})" if engine.provider != "CUDA" else ""))
    out, seeds, psi = job["out"], job["seeds"], job["psi"]
    edits = engine.edits(a.edit)  # names and strengths checked before any face is made
    if edits:
        print("edits: " + ", ".join(f"{k}={v:g}" for k, v in edits.items()))
    make_room(out.parent if job["kind"] != "folder" else out)
    t0 = time.perf_counter()
    if job["kind"] == "morph":
        frames = engine.morph(seeds, a.frames, psi, edits)
        save_animation(frames, out, fps=a.fps, scale=job["scale"])
        print(f"morph {a.morph}: {len(frames)} frames -> {out}")
        return 0
    if job["kind"] == "grid":
        img, _ = engine.grid(seeds, job["cols"], psi, edits)
        save_png(upscale(img, job["scale"]), out)
        print(f"grid {job['rows']}x{job['cols']} of seeds {seeds[0]}..{seeds[-1]} -> {out}")
        return 0
    if job["kind"] == "face":
        img = engine.face(seeds[0], psi, edits)
        save_png(upscale(img, job["scale"]), out)
        print(f"1 face (seed {seeds[0]}) -> {out}")
        return 0
    bar, update = progress_bar(len(seeds), a.quiet or len(seeds) < 2, "faces")
    if job["kind"] == "zip":
        r = engine.write_zip(seeds, out, psi, a.batch_size, update, edits)
        count, n_distinct, seconds = r["count"], r["distinct"], r["seconds"]
    else:  # batch by batch, so memory stays flat for any count
        digests, done = set(), 0
        for imgs in engine.batches(engine.latents(seeds, psi, edits), a.batch_size, update):
            for s, img, data in zip(seeds[done:done + len(imgs)], imgs, png_batch(imgs)):
                atomic_write_bytes(out / seed_filename(s), data)
                digests.add(digest(img))
            done += len(imgs)
        count, n_distinct, seconds = done, len(digests), time.perf_counter() - t0
    bar.close()
    print(f"{count} faces, {n_distinct} distinct of {count}, {count / max(seconds, 1e-9):.0f} images/s "
          f"({seconds:.2f} s) -> {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(parse_args(argv))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
