"""Slow clients and connection floods, handled where connections live: uvicorn's HTTP protocol.

uvicorn closes idle keep-alive connections, but a client that sends its request headers one byte
every few seconds, or stalls in the middle of a body, keeps its connection (and the body read so
far) for as long as it likes. This protocol adds, per connection:

- a deadline for the request headers (from the connection's start, or the end of the last response);
- a deadline for the body, once the headers are in;
- a cap on open connections in all: a new connection over it closes the one that has waited longest
  for its request headers, first among those that never completed a request (slow clients, floods),
  then among idle keep-alives; a client in the middle of a request is never dropped for a newcomer;
  if none waits, the newcomer is closed itself;
- a cap per address, where addresses mean visitors: not behind a trusted proxy, whose one address
  carries every visitor (there the proxy waits for whole headers anyway, and the total cap holds).

A connection that misses a deadline or a cap is closed with one log line (at most one such line per
address a minute). `install()` makes it the protocol of every server
uvicorn starts in this process (Gradio builds its uvicorn.Config itself, with the default "auto").
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from demo.visitors import internal

log = logging.getLogger("anime_gan.app")


@dataclass(frozen=True)
class ConnectionLimits:
    header_s: float = 10.0        # request headers complete within this many seconds
    body_s: float = 30.0          # the whole body within this many seconds after the headers
    per_address: int = 128        # open connections from one address (not applied to a trusted proxy's)
    total: int = 1024             # open connections in all
    proxied: bool = False         # behind a trusted proxy: no per-address cap for private addresses


class GuardedH11Protocol(H11Protocol):
    limits = ConnectionLimits()
    open_by_address: Counter = Counter()
    live: set = set()             # open connections (for the total cap)
    _said: dict[str, float] = {}   # 'address kind' -> when it was last logged

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._address = self.client[0] if self.client else "?"
        self._timer, self._since = None, time.monotonic()
        cls, lim = type(self), self.limits
        cls.open_by_address[self._address] += 1
        cls.live.add(self)
        mine = cls.open_by_address[self._address]
        if mine > lim.per_address and not (lim.proxied and internal(self._address)):
            self._say("address", f"closed a connection from {self._address}: {mine} open from it "
                                 f"(at most {lim.per_address})")
            transport.close()
            return
        if len(cls.live) > lim.total:
            waiting = [c for c in cls.live if c is not self and c._waiting == "headers" and not c.transport.is_closing()]
            # Connections that never completed a request go before idle keep-alives of clients that did.
            victim = min(waiting, key=lambda c: (c._served > 0, c._since)) if waiting else self
            victim._say("total", f"closed a connection from {victim._address}: {len(cls.live)} open in all (at most "
                        f"{lim.total}); it had waited longest for its request headers")
            victim.transport.close()
            if victim is self:
                return
        self._arm("headers", lim.header_s)

    def connection_lost(self, exc) -> None:
        self._disarm()
        type(self).live.discard(self)
        counts = type(self).open_by_address
        counts[self._address] -= 1
        if counts[self._address] <= 0:
            del counts[self._address]
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        state = self.conn.their_state
        if state is h11.SEND_BODY and self._waiting != "body":
            self._arm("body", self.limits.body_s)
        elif state not in (h11.IDLE, h11.SEND_BODY):  # the request is in: the response may take its time
            self._disarm()

    _served = 0  # responses this connection has completed

    def on_response_complete(self) -> None:
        self._served += 1
        super().on_response_complete()
        self._arm("headers", self.limits.header_s + self.timeout_keep_alive)  # the next request's headers

    # ------------------------------------------------------------------ deadlines

    _waiting: str | None = None

    def _arm(self, what: str, seconds: float) -> None:
        self._disarm()
        self._waiting, self._since = what, time.monotonic()
        self._timer = self.loop.call_later(seconds, self._expire, what, seconds)

    def _disarm(self) -> None:
        if getattr(self, "_timer", None) is not None:
            self._timer.cancel()
        self._timer, self._waiting = None, None

    def _expire(self, what: str, seconds: float) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        self._say(what, f"closed a connection from {self._address}: the request {what} did not arrive "
                        f"within {seconds:g} s")
        self.transport.close()

    def _say(self, kind: str, message: str) -> None:
        """One log line per address and kind of closing a minute: a flood of slow sockets is one line."""
        now, said, key = time.monotonic(), type(self)._said, f"{self._address} {kind}"
        if now - said.get(key, -1e9) >= 60:
            said[key] = now
            while len(said) > 4096:
                said.pop(next(iter(said)))
            log.info(message)


def install(limits: ConnectionLimits = ConnectionLimits()) -> None:
    """Every uvicorn server started in this process uses GuardedH11Protocol with these limits."""
    from uvicorn import config

    GuardedH11Protocol.limits = limits
    target = f"{__name__}:GuardedH11Protocol"
    for name in ("auto", "h11"):
        config.HTTP_PROTOCOLS[name] = target
