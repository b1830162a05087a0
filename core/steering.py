"""Steering: directions in z that change one thing about a face, read from the file beside a model.

Each direction is a unit vector in z. An edit adds `strength` times it to the (truncated) latent:
z' = psi * z + sum(strength_i * d_i). Since z is standard normal, a strength of 1 moves a face by
one standard deviation along the direction. export/directions.py measures the directions of a model
and writes NAME.directions.json beside NAME.onnx; this module only reads and applies them.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import UserError, quote
from core.limits import LIMITS

SUFFIX = ".directions.json"
NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)


def directions_path(model: Path) -> Path:
    return model.with_name(model.stem + SUFFIX)


@dataclass
class Directions:
    names: list[str]
    vectors: np.ndarray                     # [k, z_dim] float32, unit rows
    kinds: dict[str, str]                   # name -> "named" | "principal"
    info: dict = field(default_factory=dict)  # how they were measured, the effect table, the model's sha256
    effects: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> attribute moved per unit step

    @classmethod
    def load(cls, path: Path, z_dim: int, model_sha256: str | None = None) -> "Directions":
        try:
            data = json.loads(Path(path).read_text())
            entries = data["directions"]
            names = [e["name"] for e in entries]
            vectors = np.asarray([e["vector"] for e in entries], np.float32)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{path} is not a directions file ({type(exc).__name__})") from None
        if vectors.ndim != 2 or vectors.shape[1] != z_dim:
            raise UserError(f"{path} holds directions of size {vectors.shape[-1]}, the model's z has {z_dim}")
        if model_sha256 and data.get("model_sha256") not in (None, model_sha256):
            raise UserError(f"{path} was measured on another model (sha256 {str(data.get('model_sha256'))[:12]})")
        info = {k: v for k, v in data.items() if k != "directions"}
        effects = {e["name"]: e["effect"] for e in entries if isinstance(e.get("effect"), dict)}
        return cls(names, vectors, {e["name"]: e.get("kind", "named") for e in entries}, info, effects)

    def label(self, name: str) -> str:
        """A direction as menus show it: a named one by its name; a principal one (a direction of
        greatest change, which no label defines) marked as such."""
        return name.replace("_", " ") if self.kinds.get(name) != "principal" else f"{name} (principal, unnamed)"

    def describe(self, name: str, threshold: float = 0.3) -> str:
        """What a direction was measured to change most per unit step (its effect table), for captions."""
        effect = sorted((self.effects.get(name) or {}).items(), key=lambda kv: -abs(kv[1]))
        moved = [f"{'more' if v > 0 else 'less'} {k.replace('_', ' ')}" for k, v in effect[:2] if abs(v) >= threshold]
        kind = "a principal direction with no name" if self.kinds.get(name) == "principal" else "a named direction"
        return f"`{name}`, {kind}" + (f": mostly {' and '.join(moved)}" if moved else ": no single attribute moves much")

    def named(self) -> list[str]:
        return [n for n in self.names if self.kinds[n] == "named"]

    def principal(self) -> list[str]:
        return [n for n in self.names if self.kinds[n] == "principal"]

    def check(self, edits: dict[str, object]) -> dict[str, float]:
        """{name: strength} with known names and strengths in [-limit, limit]; zeros dropped."""
        out = {}
        for name, value in edits.items():
            if name not in self.names:
                raise UserError(f"unknown direction {quote(name)}; this model has: {', '.join(self.names)}")
            # float() also reads other scripts' digits ("١" is 1) and words ("inf"): only ASCII numbers pass.
            text = value if isinstance(value, str) else None
            if isinstance(value, bool) or (text is not None and not NUMBER.fullmatch(text.strip())):
                raise UserError(f"strength of {name} must be a number, got {quote(value)}")
            try:
                s = float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise UserError(f"strength of {name} must be a number, got {quote(value)}") from None
            if not math.isfinite(s) or abs(s) > LIMITS.edit_strength:
                raise UserError(f"strength of {name} must be from {-LIMITS.edit_strength:g} to "
                                f"{LIMITS.edit_strength:g}, got {quote(value)}")
            if s:
                out[name] = s
        return out

    def parse(self, spec: object) -> dict[str, float]:
        """'hair_blonde=1.5,brightness=-1' -> {name: strength}; empty text means no edit."""
        if spec is None or (isinstance(spec, str) and not spec.strip()):
            return {}
        if not isinstance(spec, str) or len(spec) > 2000:
            raise UserError(f"edits must be text such as hair_blonde=1.5,brightness=-1, got {quote(spec)}")
        edits: dict[str, str] = {}
        for part in spec.split(","):
            m = re.fullmatch(r"\s*([A-Za-z0-9_]+)\s*=\s*([^=]+?)\s*", part)
            if not m:
                raise UserError(f"edits: {quote(part)} is not NAME=STRENGTH, e.g. hair_blonde=1.5")
            edits[m.group(1)] = m.group(2)
        return self.check(edits)

    def apply(self, z: np.ndarray, edits: dict[str, float]) -> np.ndarray:
        """z [B, z_dim] (already times psi) plus the edits, float32."""
        out = np.array(z, np.float32, copy=True)
        for name, s in edits.items():
            out += np.float32(s) * self.vectors[self.names.index(name)]
        return out
