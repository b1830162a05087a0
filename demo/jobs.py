"""Heavy work one at a time, for real, and cancelled work stopped.

Gradio runs a handler in a worker thread. When a client cancels a running request, Gradio frees the
request's concurrency slot at once, but Python cannot stop the thread: the work goes on, and the
next queued zip starts beside it (a storm of cancels ran 23 zips at once, about 1 GB). So the heavy
handlers also hold a slot of their own (`Gate.slot`), released only when their work really ends,
and check between batches whether Gradio still counts their request as running (`job_alive`): a
cancelled zip stops within one batch, and a cancelled job waiting for the slot gives up at once.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

from core.errors import UserError


def job_alive() -> bool:
    """Whether the Gradio request this thread works for is still running (True outside Gradio)."""
    try:
        from gradio.context import LocalContext
    except ImportError:  # pragma: no cover - gradio is a dependency of the app
        return True
    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    queue = getattr(blocks, "_queue", None)
    if queue is None or event_id is None:
        return True
    return any(evt._id == event_id for job in list(queue.active_jobs) if job for evt in job)


class Gate:
    """At most `n` holders at a time; waiting holders give up as soon as their request is cancelled."""

    def __init__(self, n: int = 1, poll_s: float = 0.2):
        self._sem, self.poll_s = threading.Semaphore(n), poll_s

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        while not self._sem.acquire(timeout=self.poll_s):
            if not job_alive():
                raise UserError("cancelled")
        try:
            if not job_alive():
                raise UserError("cancelled")
            yield
        finally:
            self._sem.release()


HEAVY = {"zip": Gate(1), "morph": Gate(1)}
