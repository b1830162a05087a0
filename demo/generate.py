"""Generate anime faces from the command line with the shipped ONNX generators (no PyTorch needed).

examples:
  python -m demo.generate                                  # seeds 0-999 -> faces.zip (1,000 faces)
  python -m demo.generate --seeds 1,5,9-12 --out faces/    # PNGs into a folder
  python -m demo.generate --count 64 --start 100 --grid 8x8 --out grid.png
  python -m demo.generate --seeds 42 --out face.png --upscale 4
  python -m demo.generate --morph 3,7,11 --frames 30 --out morph.gif
  python -m demo.generate --model edge-w64 --psi 0.7 --batch-size 256
  python -m demo.generate --seeds 42 --edit hair_blonde=1.5,brightness=-1 --out blonde.png
  python -m demo.generate --model cgan --class blonde --seeds 42 --out blonde.png
  python -m demo.generate --list-models
  python -m demo.generate --invert me.png --out found.png            # the face nearest it, and its latent
  python -m demo.generate --invert me.png --edit hair_blonde=1.5 --out blonde.png
  python -m demo.generate --invert me.png --morph 7,11 --out morph.gif
  python -m demo.generate --latent found.latent.json --edit hair_dark=1 --out dark.png   # start from a found face
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from core import limits
from core.errors import UserError, command, quote
from core.files import atomic_write_text
from core.images import upscale
from core.limits import FACE, LIMITS, MORPH_SCALE, in_range
from core.ort import plan as providers
from core.pictures import read_face
from core.seeds import ANY_CLASS, check_psi, check_seed, check_span, parse_seeds
from core.stopping import StopOnSignals
from runtime.menu import ModelMenu
from runtime.writers import WRITERS, animation_formats, writer_for


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m demo.generate", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)  # no guessing: "--see 4" must not quietly mean --seeds
    p.add_argument("--seeds", "--seed", dest="seeds", help="seed list such as 0-999 or 1,5,9-12, or one seed: "
                                                           "--seed 42 (default 0-999)")
    p.add_argument("--count", type=int, help="number of faces from --start (instead of --seeds), e.g. --count 64")
    p.add_argument("--start", type=int, default=0, help="first seed for --count (default 0)")
    kinds = "; ".join(f"{s if s != '/' else 'folder/'}: {w.what}" for s, w in WRITERS.items())
    p.add_argument("--out", default=None, help=f"faces.zip by default; {kinds}. Missing folders are created")
    p.add_argument("--grid", help=f"ROWSxCOLS up to {LIMITS.grid_side}x{LIMITS.grid_side}, e.g. 8x8: one grid image")
    p.add_argument("--morph", help=f"2 to {LIMITS.morph_seeds} seeds to morph between in order, e.g. 3,7,11")
    p.add_argument("--frames", type=int, default=30,
                   help=f"frames per morph step ({LIMITS.morph_frames[0]}-{LIMITS.morph_frames[1]}, "
                        f"at most {LIMITS.morph_total_frames} in all; default 30)")
    p.add_argument("--fps", type=int, default=15, help=f"morph frames per second ({LIMITS.fps[0]}-{LIMITS.fps[1]}, default 15)")
    p.add_argument("--psi", type=float, default=1.0, help="truncation: scale z toward 0, in (0, 2]; 1 = off (default)")
    p.add_argument("--upscale", type=int, help=f"enlarge single faces, grids and morphs N times, nearest "
                                               f"({LIMITS.upscale[0]}-{LIMITS.upscale[1]}, pictures at most "
                                               f"{LIMITS.picture_side} px; default 1, morphs {MORPH_SCALE})")
    p.add_argument("--edit", help=f"steer every face: NAME=STRENGTH,... along the model's directions "
                                  f"(see --list-models), strengths -{LIMITS.edit_strength:g} to {LIMITS.edit_strength:g}")
    p.add_argument("--class", dest="cls", metavar="CLASS", help=f"for a conditional model: the class of every face "
                                                                f"(see --list-models; default {ANY_CLASS}: each seed "
                                                                f"draws its own)")
    p.add_argument("--model", help="a shipped model's name (see --list-models) or an .onnx file "
                                   "(default: $ANIME_GAN_MODEL or generator)")
    p.add_argument("--invert", metavar="PICTURE", help="find a face in the model's space (a PNG, JPEG, WebP, BMP or "
                                                        "GIF of at most 2 MiB; needs the model's encoder): writes the "
                                                        "face found and its latent (--out with .latent.json); "
                                                        "--edit steers it, --morph goes from it through seeds")
    p.add_argument("--latent", metavar="FILE", help="start from a face found before: a NAME.latent.json that --invert "
                                                     "(or python -m trainer.encoder.refine) wrote, with its model")
    p.add_argument("--list-models", action="store_true", help="list the shipped models and exit")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="execution provider (default auto)")
    p.add_argument("--batch-size", type=int, default=64,
                   help=f"latents per generator call ({LIMITS.batch_size[0]}-{LIMITS.batch_size[1]}, default 64)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def pick_seeds(a: argparse.Namespace) -> list[int]:
    if a.seeds is not None and a.count is not None:
        raise UserError("use either --seeds (--seed) or --count/--start, not both")
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


def check_out(path: Path, kind: str) -> Path:
    """The path the user named, checked before any work: the right kind of output for the job, not a
    folder where a file goes. Missing folders are created only after every check has passed."""
    w = writer_for(path)
    if w.kind != kind:
        want = [s for s, x in WRITERS.items() if x.kind == kind]
        raise UserError(f"--out must end in {' or '.join(want)} here, got {quote(str(path))}")
    if w.kind != "faces" or w.suffix != "/":
        if path.is_dir():
            raise UserError(f"--out {path} is a folder")
    elif path.exists() and not path.is_dir():
        raise UserError(f"--out {path} is a file, not a folder")
    return path


def plan(a: argparse.Namespace) -> dict:
    """Every flag checked, and the work described, before a model is loaded or a file touched."""
    psi = check_psi(a.psi, "--psi")
    providers(a.device)  # --device cuda on a machine without one fails here, before any work
    in_range(a.batch_size, "--batch-size", *LIMITS.batch_size)
    in_range(a.fps, "--fps", *LIMITS.fps)
    if a.upscale is not None:
        in_range(a.upscale, "--upscale", *LIMITS.upscale)
    if a.invert is not None or a.latent is not None:
        if a.invert is not None and a.latent is not None:
            raise UserError("give --invert PICTURE or --latent FILE, not both")
        if a.grid or a.seeds is not None or a.count is not None:
            raise UserError(f"{'--invert' if a.invert else '--latent'} starts from one face: leave out --seeds, "
                            f"--count and --grid")
        face = read_face(Path(a.invert)) if a.invert is not None else read_latent(Path(a.latent))
        if a.morph is not None:
            seeds = parse_seeds(a.morph, LIMITS.morph_seeds - 1, "--morph")
            scale = MORPH_SCALE if a.upscale is None else a.upscale
            in_range(a.frames, "--frames", *LIMITS.morph_frames)
            limits.check_morph(len(seeds) + 1, a.frames, scale)
            return {"kind": "invert", "start": face, "seeds": seeds, "psi": psi, "scale": scale,
                    "out": check_out(Path(a.out or f"morph.{animation_formats()[0]}"), "animation")}
        scale = a.upscale or 1
        limits.check_picture(FACE, FACE, scale)
        return {"kind": "invert", "start": face, "seeds": [], "psi": psi, "scale": scale,
                "out": check_out(Path(a.out or "found.png"), "picture")}
    if a.morph is not None:
        if a.grid or a.seeds is not None or a.count is not None:
            raise UserError("--morph takes its own seeds; leave out --seeds, --count and --grid")
        seeds = parse_seeds(a.morph, LIMITS.morph_seeds, "--morph")
        scale = MORPH_SCALE if a.upscale is None else a.upscale
        in_range(a.frames, "--frames", *LIMITS.morph_frames)
        limits.check_morph(len(seeds), a.frames, scale)
        return {"kind": "morph", "seeds": seeds, "psi": psi, "scale": scale,
                "out": check_out(Path(a.out or f"morph.{animation_formats()[0]}"), "animation")}
    seeds = pick_seeds(a)
    scale = a.upscale or 1
    if a.grid:
        rows, cols = parse_grid(a.grid)
        limits.check_grid(rows, cols, scale)
        return {"kind": "grid", "seeds": seeds[:rows * cols], "rows": rows, "cols": cols, "psi": psi, "scale": scale,
                "out": check_out(Path(a.out or "grid.png"), "picture")}
    out = Path(a.out or ("face.png" if len(seeds) == 1 else "faces.zip"))
    if writer_for(out).kind == "picture":
        if len(seeds) != 1:
            raise UserError("--out *.png takes one seed, or --grid RxC; use a .zip or a folder for many")
        limits.check_picture(FACE, FACE, scale)
        return {"kind": "face", "seeds": seeds, "psi": psi, "scale": scale, "out": check_out(out, "picture")}
    if a.upscale is not None and a.upscale != 1:
        raise UserError("--upscale applies to one face, a grid or a morph, not to zips and folders")
    return {"kind": "faces", "seeds": seeds, "psi": psi, "out": check_out(out, "faces")}


def progress_bar(total: int, quiet: bool, desc: str):
    from tqdm import tqdm  # a dependency of the runtime (requirements.txt)

    bar = tqdm(total=total, unit="img", desc=desc, disable=quiet)

    def update(done: int, _total: int) -> None:
        bar.update(done - bar.n)
    return bar, update


def list_models(menu: ModelMenu) -> int:
    for name in menu.names():
        e = menu.entries[name]
        print(f"{name:16} {e.path.stat().st_size / 1e6 if e.path.is_file() else 0:6.1f} MB  {e.label}")
        try:
            engine = menu.get(name)
        except UserError as exc:
            print(f"{'':16} {exc}")
            continue
        d = engine.directions
        print(f"{'':16} directions: {', '.join(d.names) if d else 'none'}")
        if engine.classes:
            print(f"{'':16} classes: {', '.join(engine.classes)} (--class NAME; default {ANY_CLASS})")
    return 0


def make_room(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create folder {folder}: {exc.strerror or exc}") from None


@command
def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    menu = ModelMenu(device=a.device, default=a.model)
    if a.list_models:
        return list_models(menu)
    job = plan(a)
    engine = menu.get()
    where = "" if menu.default == str(engine.model_path) else f" = {engine.model_path}"
    print(f"model: {menu.default}{where} (z_dim {engine.z_dim}, sha256 {engine.sha256[:12]})")
    print(f"provider: {engine.provider}" + (f" ({engine.provider_note})" if engine.provider != "CUDA" else ""))
    out, seeds = job["out"], job["seeds"]
    edits = engine.edits(a.edit)  # names, strengths and the class checked before any face is made
    engine.class_ids(seeds[:1], a.cls)
    if edits:
        print("edits: " + ", ".join(f"{k}={v:g}" for k, v in edits.items()))
    if engine.classes:
        print(f"class: {a.cls or ANY_CLASS}")
    make_room(out if job["kind"] == "faces" and writer_for(out).suffix == "/" else out.parent)
    # Ctrl-C / SIGTERM: many faces stop after the current batch and keep what was made; a picture or
    # an animation stops at once and leaves no temporary file.
    with StopOnSignals(graceful=job["kind"] == "faces") as stop:
        return run_job(engine, job, a, edits, stop)


def run_job(engine, job: dict, a: argparse.Namespace, edits: dict, stop: StopOnSignals) -> int:
    out, seeds, psi = job["out"], job["seeds"], job["psi"]
    writer = writer_for(out)
    if job["kind"] == "invert":
        return invert(engine, job, a, edits)
    if job["kind"] == "morph":
        frames = engine.morph(seeds, a.frames, psi, edits, a.cls)
        writer.write(frames, out, fps=a.fps, scale=job["scale"])
        print(f"morph {a.morph}: {len(frames)} frames -> {out}")
        return 0
    if job["kind"] in ("grid", "face"):
        img = engine.grid(seeds, job["cols"], psi, edits, a.cls)[0] if job["kind"] == "grid" else \
            engine.face(seeds[0], psi, edits, a.cls)
        writer.write(upscale(img, job["scale"]), out)
        what = f"grid {job['rows']}x{job['cols']} of seeds {seeds[0]}..{seeds[-1]}" if job["kind"] == "grid" \
            else f"1 face (seed {seeds[0]})"
        print(f"{what} -> {out}")
        return 0
    bar, update = progress_bar(len(seeds), a.quiet or len(seeds) < 2, "faces")
    t0 = time.perf_counter()
    r = writer.write(engine, seeds, out, psi, a.batch_size, update, edits, a.cls, cancelled=stop, keep_partial=True)
    bar.close()
    seconds = time.perf_counter() - t0
    print(f"{r['count']} faces, {r['distinct']} distinct of {r['count']}, {r['count'] / max(seconds, 1e-9):.0f} "
          f"images/s ({seconds:.2f} s) -> {out}")
    if stop():
        what = "a complete zip; its manifest.json lists them" if writer.suffix == ".zip" else "each file complete"
        print(f"stopped by {stop.name}: {r['count']} of {r['requested']} faces in {out} ({what})", file=sys.stderr)
        return stop.exit_code
    return 0


def read_latent(path: Path) -> dict:
    """A latent file that --invert wrote (z, class, model and its sha256); UserError for anything else."""
    try:
        if path.stat().st_size > 2**20:
            raise ValueError
        record = json.loads(path.read_text())
        z = np.asarray(record["z"], np.float32)
        if z.ndim != 1 or not np.isfinite(z).all() or not isinstance(record.get("class"), (str, type(None))):
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"--latent {path} is not a latent file written by --invert") from None
    return {"z": z, "class": record.get("class"), "model": record.get("model"), "model_sha256": record.get("model_sha256")}


def found_latent(engine, job: dict, a: argparse.Namespace) -> tuple[np.ndarray, np.ndarray | None]:
    """The start of an --invert or --latent job: (z [1, z_dim], class [1] or None)."""
    start = job["start"]  # the picture's face, or a latent file's record
    if isinstance(start, np.ndarray):
        z, classes = engine.invert(start[None])
    else:  # a latent file: it belongs to the model it was found in
        if start["model_sha256"] not in (None, engine.sha256) or len(start["z"]) != engine.z_dim:
            raise UserError(f"{a.latent} was found in {start['model'] or 'another model'}, not in "
                            f"{engine.model_path.name}: give --model with that model")
        z = start["z"][None]
        cls = engine.class_of(start["class"]) if engine.classes and start["class"] else None
        classes = None if not engine.classes else np.full(1, cls or 0, np.int64)
    if classes is not None and engine.class_of(a.cls) is not None:  # --class NAME: that class, not the one read
        classes = np.full(1, engine.class_of(a.cls), np.int64)
    return z, classes


def invert(engine, job: dict, a: argparse.Namespace, edits: dict) -> int:
    """The face nearest the picture that the model can draw (or a latent file's face), steered or
    morphed on, and its latent."""
    z, classes = found_latent(engine, job, a)
    start = a.invert or a.latent
    out = job["out"]
    if job["seeds"]:
        frames = engine.morph_from(z[0], None if classes is None else int(classes[0]), job["seeds"], a.frames, job["psi"])
        writer_for(out).write(frames, out, fps=a.fps, scale=job["scale"])
        print(f"morph from {start} through {a.morph}: {len(frames)} frames -> {out}")
    else:
        face = engine.from_latents(z, classes, edits)[0]
        writer_for(out).write(upscale(Image.fromarray(face), job["scale"]), out)
        print(f"the face found for {start} -> {out}")
    record = {"picture": Path(a.invert).name if a.invert else None, "from": Path(start).name,
              "model": engine.model_path.name, "model_sha256": engine.sha256,
              "z": [round(float(v), 6) for v in z[0]], "class": None if classes is None else engine.classes[int(classes[0])],
              "edits": edits}
    latent = out.with_name(out.stem + ".latent.json")
    atomic_write_text(latent, json.dumps(record, indent=1) + "\n")
    print(f"its latent -> {latent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
