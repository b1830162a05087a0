"""matplotlib figures written the way every other output here is: headless, and atomically.

matplotlib is imported on first use only: the app and the runtime never draw a plot, and a Space
does not install it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from core.files import atomic_write


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display: servers, CI and GPU machines have none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, make_parents: bool = False) -> Path:
    """Write `fig` to `path` as PNG and close it. A crash leaves the old picture or the new one,
    never half of one (core.files.atomic_write), and the figure is closed even when writing fails
    (a long run draws one per epoch: open figures would pile up)."""
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"), make_parents)
    finally:
        pyplot().close(fig)
