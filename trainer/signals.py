"""Ctrl-C, SIGTERM and SIGUSR1 as a clean stop: finish the step, save, exit with the shell's code."""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Iterator

log = logging.getLogger("trainer")


@contextlib.contextmanager
def stop_on_signals(trainer, enabled: bool = True) -> Iterator[None]:
    """Ctrl-C, SIGTERM or SIGUSR1 finishes the current step, saves everything and exits (130, 143,
    138). Cluster schedulers send one of them before a job's time is up (Slurm: --signal=USR1@120),
    spot instances and notebook hosts send SIGTERM.

    A second Ctrl-C stops at once (the last periodic checkpoint still holds). Under torchrun the
    processes could stop at different steps and hang in an all-reduce, so there the defaults stay
    and the periodic checkpoints are what --resume uses.
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if trainer.interrupted and signum == signal.SIGINT:
            raise KeyboardInterrupt
        trainer.interrupted = signum
        log.info("interrupted (%s): stopping after this step (Ctrl-C again to stop at once)",
                 signal.Signals(signum).name)

    caught = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGUSR1] if hasattr(signal, "SIGUSR1") else [])
    previous = {s: signal.signal(s, handler) for s in caught}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
