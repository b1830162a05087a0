"""Generated blocks inside hand-written Markdown pages: a table between two marker comments is
replaced by a command's output, so tables in README and docs/ are made, never copied by hand.

    <!-- begin: models -->
    | ... the generated table ... |
    <!-- end: models -->
"""
from __future__ import annotations

import re
from pathlib import Path

from core.errors import UserError
from core.files import atomic_write_text


def markers(name: str) -> tuple[str, str]:
    return f"<!-- begin: {name} -->", f"<!-- end: {name} -->"


def replace_block(path: Path, name: str, text: str) -> bool:
    """Put `text` between the page's markers called `name`; True when the page changed. A page
    without the markers is an error (a generated table must have a known place)."""
    begin, end = markers(name)
    page = path.read_text()
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(page):
        raise UserError(f"{path} has no '{begin}' ... '{end}' block to fill")
    new = pattern.sub(lambda _: f"{begin}\n{text.rstrip()}\n{end}", page, count=1)
    if new != page:
        atomic_write_text(path, new)
    return new != page


def read_block(path: Path, name: str) -> str | None:
    """The text between the markers, or None when the page has none."""
    begin, end = markers(name)
    m = re.search(re.escape(begin) + r"\n?(.*?)\n?" + re.escape(end), path.read_text(), re.S)
    return m.group(1) if m else None
