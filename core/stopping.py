"""Ctrl-C and SIGTERM for the command-line tools: a stop that loses nothing it has finished.

Long, batched work (a zip of a million faces) asks `stop()` between batches and closes what it
has made; anything else stops at once by SystemExit, which unwinds through the atomic writers, so
their temporary files are removed (without a handler SIGTERM kills the process where it stands and
leaves them behind). A second signal always stops at once. The exit code is the shell's for death
by that signal (130 for SIGINT, 143 for SIGTERM).
"""
from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignals:
    """`with StopOnSignals(graceful=True) as stop:` ... `if stop(): break` ...; `stop.signum` says which."""

    def __init__(self, graceful: bool = False):
        self.graceful = graceful
        self.signum: int | None = None
        self._previous: dict = {}

    def __call__(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or 0)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        again = self.signum is not None
        self.signum = signum
        if self.graceful and not again:
            print(f"\n{self.name}: finishing the current batch and closing what was made (again to stop at once)",
                  file=sys.stderr, flush=True)
            return
        print(f"\n{self.name}: stopped; nothing half-written is left", file=sys.stderr, flush=True)
        raise SystemExit(self.exit_code)

    def __enter__(self) -> "StopOnSignals":
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous = {}
