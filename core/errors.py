"""User errors: bad input or an unusable file, reported as one line without a traceback.

Only these are turned into `error: ...` lines by the command-line tools and into messages by the
app; any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations


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
