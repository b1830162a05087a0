"""Every limit of the runtime in one place, and the cost rules that the CLI and the app share.

Limits are set by cost, not only per field: a morph is bounded by its total number of frames and
pixels, a picture by its side in pixels after enlargement, so no legal request can take minutes
or gigabytes. docs/app.md's "Limits" table lists these figures.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.errors import UserError


@dataclass(frozen=True)
class Limits:
    max_seed: int = 2**32 - 1
    psi: tuple[float, float] = (0.0, 2.0)       # psi in (0, 2]
    zip_faces: int = 1000                       # faces per zip in the app (ANIME_GAN_MAX_COUNT may lower it)
    cli_faces: int = 1_000_000                  # faces per CLI run (zips and folders are streamed)
    grid_side: int = 16                         # rows and columns of a grid
    morph_seeds: int = 16                       # key seeds of a morph
    morph_frames: tuple[int, int] = (2, 120)    # frames per leg
    morph_total_frames: int = 241               # all frames of one morph: 2 legs of 120, or 15 legs of 16
    animation_pixels: int = 241 * 256 * 256     # frames x width x height of one animation file
    fps: tuple[int, int] = (1, 50)              # GIF stores durations in 10 ms steps: 50 fps is 20 ms
    upscale: tuple[int, int] = (1, 16)
    picture_side: int = 4096                    # pixels along either side of one picture
    batch_size: tuple[int, int] = (1, 4096)
    edit_strength: float = 5.0                  # |strength| of one steering direction, in standard deviations


LIMITS = Limits()
FACE = 64       # generated faces are FACE x FACE pixels
GRID_PAD = 2    # pixels between grid cells


def in_range(value: int, name: str, lo: int, hi: int) -> int:
    if not lo <= value <= hi:
        raise UserError(f"{name} must be from {lo} to {hi}, got {value}")
    return value


def grid_side_pixels(cells: int) -> int:
    return cells * (FACE + GRID_PAD) + GRID_PAD


def check_picture(width: int, height: int, scale: int) -> None:
    """A picture of width x height pixels, enlarged `scale` times, must fit LIMITS.picture_side."""
    in_range(scale, "upscale", *LIMITS.upscale)
    side = max(width, height) * scale
    if side > LIMITS.picture_side:
        most = max(1, LIMITS.picture_side // max(width, height))
        raise UserError(f"upscale {scale} would make a picture {side} pixels wide (at most "
                        f"{LIMITS.picture_side}); use an upscale of at most {most} here")


def check_grid(rows: int, cols: int, scale: int = 1) -> None:
    in_range(rows, "rows", 1, LIMITS.grid_side)
    in_range(cols, "columns", 1, LIMITS.grid_side)
    check_picture(grid_side_pixels(cols), grid_side_pixels(rows), scale)


def morph_frame_count(n_seeds: int, frames: int) -> int:
    return (n_seeds - 1) * frames + 1


def check_morph(n_seeds: int, frames: int, scale: int = 1) -> int:
    """Total frames of a morph, or UserError when it would cost more than the limits allow."""
    if n_seeds < 2:
        raise UserError("a morph needs at least two seeds, e.g. 3,7")
    in_range(n_seeds, "morph seeds", 2, LIMITS.morph_seeds)
    in_range(frames, "frames", *LIMITS.morph_frames)
    in_range(scale, "upscale", *LIMITS.upscale)
    total = morph_frame_count(n_seeds, frames)
    if total > LIMITS.morph_total_frames:
        most = (LIMITS.morph_total_frames - 1) // (n_seeds - 1)
        raise UserError(f"a morph of {n_seeds} seeds with {frames} frames each makes {total} frames (at most "
                        f"{LIMITS.morph_total_frames}); use at most {most} frames per step for {n_seeds} seeds")
    pixels = total * (FACE * scale) ** 2
    if pixels > LIMITS.animation_pixels:
        raise UserError(f"{total} frames of {FACE * scale}x{FACE * scale} pixels are too large an animation "
                        f"({pixels / 1e6:.0f} megapixels, at most {LIMITS.animation_pixels / 1e6:.0f}); "
                        f"use fewer frames or a smaller upscale")
    check_picture(FACE, FACE, scale)
    return total
MORPH_SCALE = 4  # morph animations at 256 px (64 px frames enlarged 4 times), in the CLI and the app alike
