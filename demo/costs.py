"""What a request costs, in faces' worth of work, judged from its raw inputs before it is queued.

The admission (demo/admission.py) counts these against each visitor's budget: a single face costs
1, a strip 7, a 16x16 grid 256, a zip its count, a morph four per frame (each frame is encoded at
256 px). Inputs that cannot be read cost the most their endpoint can (the handler refuses them a
moment later anyway). A request of HEAVY faces or more is heavy: bounded per visitor, and run in
the one heavy lane (demo/jobs.py) so that single faces keep a share of the CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from core.limits import LIMITS, MORPH_SCALE, morph_frame_count

HEAVY = 100          # faces: a 10x10 grid and more, a zip of 100, a morph of 25 frames
MORPH_FRAME = MORPH_SCALE  # a morph frame is encoded at 4x: about four faces' worth of pixels


def _int(value: object, lo: int, hi: int) -> int:
    """A whole number in [lo, hi] as sent, else hi (the most it could cost)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return hi
    return min(hi, max(lo, int(value))) if float(value).is_integer() else hi


def one(data: list) -> int:
    return 1


def strip(data: list) -> int:
    return 7


def invert(data: list) -> int:
    return 8  # the encoder, the face found and a strip of seven


def grid(data: list) -> int:
    return _int(data[1], 1, LIMITS.grid_side) * _int(data[2], 1, LIMITS.grid_side)


def zip_count(data: list) -> int:
    return _int(data[0], 1, LIMITS.zip_faces)


def morph(data: list) -> int:
    seeds = data[0] if isinstance(data[0], str) else ""
    n = min(LIMITS.morph_seeds, max(2, seeds.count(",") + 1)) if len(seeds) <= 256 else LIMITS.morph_seeds
    frames = min(morph_frame_count(n, _int(data[1], *LIMITS.morph_frames)), LIMITS.morph_total_frames)
    return frames * MORPH_FRAME


@dataclass(frozen=True)
class Rule:
    required: int                    # inputs a caller must send (the rest have defaults: model, class)
    cost: Callable[[list], int]      # faces' worth of work, from the inputs as sent


class Costing:
    """The rules of each handler by name, for the admission."""

    def __init__(self, rules: dict[str, Rule], heavy_groups: tuple[str, ...] = (), groups: dict[str, str] | None = None):
        self.rules, self.heavy_groups, self.groups = rules, heavy_groups, groups or {}

    @staticmethod
    def name_of(fn) -> str | None:
        """The handler a queued function runs (its name survives the app's wrappers)."""
        return getattr(getattr(fn, "fn", None), "__name__", None)

    def required(self, name: str | None, n_inputs: int) -> int:
        rule = self.rules.get(name or "")
        return n_inputs if rule is None else min(rule.required, n_inputs)

    def cost(self, name: str | None, data: list) -> int:
        rule = self.rules.get(name or "")
        if rule is None:
            return 1
        try:
            return rule.cost(data)
        except (IndexError, TypeError, ValueError):  # well_formed() checked the length; be safe anyway
            return HEAVY

    def heavy(self, name: str | None, data: list) -> bool:
        return self.groups.get(name or "") in self.heavy_groups or self.cost(name, data) >= HEAVY
