"""User errors: bad input or an unusable file, reported as one line without a traceback.

Only these are turned into `error: ...` lines by the command-line tools and into messages by the
app; any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import functools
import importlib
import sys
from typing import Callable


class UserError(Exception):
    """Bad input or an unusable file; the message is one line meant for the user."""


def quote(value: object, limit: int = 40) -> str:
    """repr() of what the user sent, cut to `limit` characters so errors never echo a flood."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def shorten(text: str, limit: int = 300) -> str:
    """One line of at most `limit` characters, cut at a word boundary and marked as cut."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut + " [...]"


def require(what: str, *modules: str) -> None:
    """A one-line UserError naming the install step when a part of the project needs packages that
    requirements.txt (the app and the CLI only) does not install: torch, onnx, ... are in
    requirements-dev.txt."""
    missing = []
    for m in modules:
        try:
            importlib.import_module(m)
        except ImportError:
            missing.append(m)
    if missing:
        raise UserError(f"{what} needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
                        f"installed: pip install -r requirements-dev.txt (requirements.txt installs only the app "
                        f"and the CLI)")


def command(main: Callable[..., int]) -> Callable[..., int]:
    """A command's main(): a UserError, or an OSError from a file the command was given, becomes one
    line on stderr ("error: ...") and exit code 2; any other exception is a bug and keeps its traceback."""
    @functools.wraps(main)
    def run(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    return run
