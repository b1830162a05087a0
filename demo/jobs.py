"""Heavy work one at a time, for real, and cancelled work stopped.

Gradio runs a handler in a worker thread. When a client cancels a running request, Gradio frees the
request's concurrency slot at once, but Python cannot stop the thread: the work goes on, and the
next queued zip starts beside it (a storm of cancels ran 23 zips at once, about 1 GB). So the heavy
handlers also hold a slot of the one heavy lane (`LANE.slot`), released only when their work really ends,
and check before every batch whether Gradio still counts their request as running and its client has
not cancelled it (`job_alive`, `watch_cancels`): a cancelled zip stops within one batch however early
the cancel comes, and a cancelled job waiting for the slot gives up at once.
"""
from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from typing import Iterator

from core.errors import UserError


# Events whose client asked to cancel them (the newest few thousand: ids are never reused).
_CANCELLED: OrderedDict[str, None] = OrderedDict()
_KEEP = 4096


def job_alive() -> bool:
    """Whether the Gradio request this thread works for is still running and not cancelled (True
    outside Gradio)."""
    try:
        from gradio.context import LocalContext
    except ImportError:  # pragma: no cover - gradio is a dependency of the app
        return True
    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    queue = getattr(blocks, "_queue", None)
    if queue is None or event_id is None:
        return True
    if event_id in _CANCELLED:
        return False
    return any(evt._id == event_id for job in list(queue.active_jobs) if job for evt in job)


def watch_cancels(blocks) -> None:
    """Remember every event a client cancels. Gradio's /cancel stops the running tasks it finds, then
    takes the event out of the queue; an event the queue starts between the two (its task did not
    exist yet when the tasks were searched, and it is no longer in the queue) was missed and ran to
    its end. The queue's remove_from_queue is what /cancel calls with the event's id, so wrapping it
    marks the event whatever the timing, and job_alive() sees the mark."""
    queue = blocks._queue
    original = queue.remove_from_queue

    async def remove_from_queue(event_id: str):
        if event_id:
            _CANCELLED[event_id] = None
            while len(_CANCELLED) > _KEEP:
                _CANCELLED.popitem(last=False)
        return await original(event_id)

    queue.remove_from_queue = remove_from_queue


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


# The heavy lane: zips, morphs and large grids run one at a time, whatever their endpoint, so heavy work
# takes at most the half of the cores one run may use (demo/app.py), and single faces keep the rest.
LANE = Gate(1)
