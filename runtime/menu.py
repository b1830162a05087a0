"""The menu of models: every ONNX file in the models folder (runtime/settings.py) with its card,
chosen by name.

Adding a model is adding `NAME.onnx` (and, for the menu, a card `NAME.json` with at least a
"label") to the folder. The app and the CLI both use this menu. Models load on first use and
stay loaded; one that fails to load is reported with its reason and the others keep working.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import UserError, quote, shorten
from runtime.engine import Engine
from runtime.settings import DEFAULT_NAME, ENCODER_SUFFIX, encoder_of, model_files, models_dir

MODEL_ENV = "ANIME_GAN_MODEL"      # a model name or a path to an .onnx file
BROWSER_DEFAULT = "generator-w64"  # the in-browser page's first model: the default's faces at a quarter of the size


@dataclass
class Entry:
    name: str
    path: Path
    menu_card: dict = field(default_factory=dict)   # NAME.json beside the model, when there is one

    @property
    def label(self) -> str:
        return self.menu_card.get("label") or self.name


def _read_card(path: Path) -> dict:
    card = path.with_suffix(".json")
    try:
        return json.loads(card.read_text()) if card.is_file() else {}
    except (OSError, ValueError):
        return {}  # a damaged card costs the menu its label, not the model


class ModelMenu:
    def __init__(self, folder: Path | None = None, device: str = "auto", default: str | None = None,
                 threads: int = 0):
        folder = Path(folder) if folder is not None else models_dir()
        self.folder, self.device, self.threads = folder, device, threads
        self.entries: dict[str, Entry] = {p.stem: Entry(p.stem, p, _read_card(p))
                                          for p in model_files(folder)}
        wanted = default if default is not None else os.environ.get(MODEL_ENV)
        self.default = self._add(wanted) if wanted else (DEFAULT_NAME if DEFAULT_NAME in self.entries
                                                         else next(iter(self.entries), DEFAULT_NAME))
        self._engines: dict[str, Engine] = {}
        self.errors: dict[str, str] = {}
        self._lock = threading.Lock()

    def _add(self, name_or_path: str) -> str:
        """A name in the menu, or a path to an .onnx file, which joins the menu under its path."""
        if name_or_path in self.entries:
            return name_or_path
        path = Path(name_or_path)
        if path.name.endswith(ENCODER_SUFFIX):
            raise UserError(f"{path.name} is an inversion encoder, not a model: give its model, "
                            f"{path.name[:-len(ENCODER_SUFFIX)]}.onnx")
        if path.suffix.lower() != ".onnx":
            raise UserError(f"unknown model {quote(name_or_path)}; known: {', '.join(self.entries) or 'none'} "
                            f"(or give a path to an .onnx file)")
        for entry in self.entries.values():
            if entry.path.resolve() == path.resolve():
                return entry.name
        self.entries[str(path)] = Entry(str(path), path, _read_card(path))
        return str(path)

    def menu_classes(self) -> list[str]:
        """Every class name the menu's cards list, in menu order and once each, without loading a model
        (a card's classes are its model's, written by the export)."""
        seen: dict[str, None] = {}
        for name in self.names():
            entry = self.entries.get(name)
            classes = entry.menu_card.get("classes") if entry else None
            if isinstance(classes, list):
                seen.update((str(c), None) for c in classes)
        return list(seen)

    def index(self, browser_default: str = BROWSER_DEFAULT) -> dict:
        """The menu for the in-browser page (demo/models/index.json; the app serves it too): it cannot
        list a folder. No model is loaded: sizes from the files, the rest from the cards."""
        entries = [{"name": e.name, "label": e.label, "variant": e.menu_card.get("variant", "?"),
                    "bytes": e.path.stat().st_size, "classes": e.menu_card.get("classes") or [],
                    "encoder": encoder_of(e.path).is_file()}
                   for e in sorted(self.entries.values(), key=lambda e: e.name) if e.path.parent == self.folder]
        names = [e["name"] for e in entries]
        return {"models": entries, "browser_default": browser_default if browser_default in names else (names or [None])[0]}

    def names(self) -> list[str]:
        """Menu order: the default first, then the others by name."""
        return [self.default] + [n for n in self.entries if n != self.default]

    def choices(self) -> list[tuple[str, str]]:
        return [(self.entries[n].label, n) for n in self.names() if n in self.entries]

    def resolve(self, name: object) -> str:
        """The name to use for a request: empty means the default; anything else must be known."""
        if name is None or (isinstance(name, str) and not name.strip()):
            return self.default
        if not isinstance(name, str) or name not in self.entries:
            raise UserError(f"unknown model {quote(name)}; choose one of: {', '.join(self.names())}")
        return name

    def get(self, name: object = None) -> Engine:
        """The loaded engine for a model name (default when empty); UserError when it cannot load."""
        name = self.resolve(name)
        with self._lock:
            if name in self._engines:
                return self._engines[name]
            if name in self.errors:
                raise UserError(self.errors[name])
            try:
                engine = Engine.load(self.entries[name].path, self.device, self.threads)
            except UserError as exc:
                self.errors[name] = f"model {name!r} could not be loaded: {shorten(exc, 240)}"
                raise UserError(self.errors[name]) from None
            self._engines[name] = engine
            return engine

    def load_all(self) -> dict[str, str]:
        """Load every model now; returns {name: error} for those that failed (the others work)."""
        for name in self.names():
            try:
                self.get(name)
            except UserError:
                pass
        return dict(self.errors)
