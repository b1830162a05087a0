"""What one visitor may ask of a public server: small requests, no uploads, a bounded share of the queue.

- Request bodies: every input of this app fits in a few hundred bytes, so bodies over
  `ANIME_GAN_MAX_BODY` (64 KiB) are refused with 413 before Gradio reads them (Gradio keeps a
  request's inputs in its per-session state, so 25 bodies of 64 MiB took 1.7 GB that never came back).
- Uploads: no component takes a file, so Gradio's upload route answers 403.
- The queue: malformed requests (an unknown function, too few or too many inputs) get one line and
  a 400; optional trailing inputs are filled with their defaults. A visitor (demo/visitors.py: by the
  address a trusted proxy appended, and by session) has at most `per_client` requests waiting or
  running, `per_client_heavy` heavy ones and `per_client_cost` faces' worth of work (demo/costs.py:
  a 16x16 grid costs 256 faces); all visitors together at most `heavy_total` heavy ones waiting, so
  single faces always find room in the queue.

The body limit is ASGI middleware, given to Gradio's FastAPI app at launch (`app_kwargs`); the queue
bound wraps the queue's `push`, the one place where Gradio admits a request.
"""
from __future__ import annotations

import inspect
import json
import logging
from dataclasses import dataclass

from demo.costs import Costing
from demo.visitors import ProxyTrust, client_of

log = logging.getLogger("anime_gan.app")
UPLOAD_PATHS = ("/gradio_api/upload", "/upload")


class BodyLimit:
    """ASGI middleware: 413 for a body over `max_bytes`, 403 for the upload route.

    A body with a Content-Length is judged by it; one without (chunked transfer) is read here first,
    up to the limit, and handed on whole: an exception raised from inside Gradio's own body parsing
    would come back as its 400 "There was an error parsing the body", with no line in our log.
    Buffering costs at most `max_bytes` per request, which the limit already allows."""

    def __init__(self, app, max_bytes: int = 64 * 1024):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if any(path.rstrip("/").endswith(p) for p in UPLOAD_PATHS):
            log.info("rejected upload to %s: this app takes no files", path)
            return await _reply(send, 403, "this app takes no uploads")
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit():
            if int(length) > self.max_bytes:
                log.info("rejected request body of %s bytes to %s (at most %d)", length.decode(), path, self.max_bytes)
                return await _reply(send, 413, f"request too large: at most {self.max_bytes} bytes")
            return await self.app(scope, receive, send)  # the server holds the body to its Content-Length
        messages, seen = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":  # the client went away
                break
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                log.info("rejected a streamed request body to %s over %d bytes (no Content-Length)", path,
                         self.max_bytes)
                return await _reply(send, 413, f"request too large: at most {self.max_bytes} bytes")
            if not message.get("more_body"):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()
        await self.app(scope, replay, send)


async def _reply(send, status: int, text: str) -> None:
    body = json.dumps({"detail": text}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class QueueBounds:
    per_client: int = 8           # requests waiting or running, per visitor and per session
    per_client_heavy: int = 2     # heavy requests (zips, morphs, large grids), per visitor and per session
    per_client_cost: int = 2048   # faces' worth of work waiting or running, per visitor and per session
    heavy_total: int = 16         # heavy requests waiting, all visitors together
    trust: ProxyTrust = ProxyTrust()  # how a visitor is known behind a proxy (demo/visitors.py)


def refusal(message: str) -> list[dict]:
    """A queue refusal that reaches the visitor with its reason. Gradio answers a "queue_full" push
    with 503, which both its page and gradio_client replace by a generic "Queue is full! Please try
    again."; a validation failure (422) is the one refusal whose text they show (the page under the
    first input and as an error, gradio_client as its ValidationError's message), in this form."""
    return [{"__type__": "validate", "is_valid": False, "parameter_name": "queue", "message": message}]


@dataclass(frozen=True)
class Ticket:
    """What the admission knows of a request in the queue: who sent it and what it costs."""
    visitor: str
    session: str | None
    cost: int
    heavy: bool


def well_formed(blocks, body, costs: Costing) -> tuple[object, str | None]:
    """(the function, None) for a request that names a known function and sends its inputs, the
    optional trailing ones filled with their defaults as gradio_client fills them; (None, why) otherwise."""
    from gradio import route_utils

    try:
        fn = route_utils.get_fn(blocks, None, body)
    except Exception:  # noqa: BLE001 - an unknown index or session: one line, not Gradio's traceback
        return None, f"unknown function index {str(body.fn_index)[:24]}"
    if not isinstance(body.data, list):
        return None, "data must be a list of inputs"
    inputs = list(fn.inputs)
    name = costs.name_of(fn)
    required = costs.required(name, len(inputs))
    if len(body.data) < required:
        try:  # the handler's own parameter names (seed, psi, ...): the API page's names for them
            names = [p for p in inspect.signature(fn.fn).parameters if p not in ("self", "progress")]
        except (TypeError, ValueError):
            names = []
        listed = f" ({', '.join(names[:required])})" if len(names) >= required else ""
        return None, f"/{name or fn.fn_index} takes {required} inputs{listed}, got {len(body.data)}"
    if len(body.data) > len(inputs):
        return None, f"/{name or fn.fn_index} takes at most {len(inputs)} inputs, got {len(body.data)}"
    body.data = body.data + [getattr(c, "value", None) for c in inputs[len(body.data):]]
    return fn, None


def bound_queue(blocks, costs: Costing, bounds: QueueBounds = QueueBounds()) -> dict:
    """Wrap the queue's push: malformed requests get one line, and no visitor fills the queue or the
    CPU. Returns the tickets of the requests in the queue, by event id (the bench and tests read it)."""
    queue = blocks._queue
    original, original_remove = queue.push, queue.remove_from_queue
    tickets: dict[str, Ticket] = {}

    def live() -> list[tuple[str, Ticket]]:
        """Tickets of requests still waiting or running (others are dropped, so the map stays small)."""
        ids = {e._id for q in list(queue.event_queue_per_concurrency_id.values()) for e in list(q.queue)}
        ids |= {e._id for job in list(queue.active_jobs) if job for e in job}
        for gone in [k for k in tickets if k not in ids]:
            tickets.pop(gone, None)
        return list(tickets.items())

    async def push(body, request, username):
        if body.fn_index is None:
            return await original(body, request, username)
        fn, why = well_formed(blocks, body, costs)
        if fn is None:
            log.info("rejected a malformed queue request: %s", why)
            return False, why, "error"
        name = costs.name_of(fn)
        cost, heavy = costs.cost(name, body.data), costs.heavy(name, body.data)
        visitor = client_of(request, bounds.trust)
        mine = [t for _, t in live() if t.visitor == visitor or (body.session_hash and t.session == body.session_hash)]
        why = None
        if len(mine) >= bounds.per_client:
            why = f"at most {bounds.per_client} requests at a time from one visitor"
        elif heavy and sum(t.heavy for t in mine) >= bounds.per_client_heavy:
            why = f"at most {bounds.per_client_heavy} zips, morphs or large grids at a time from one visitor"
        elif sum(t.cost for t in mine) + cost > bounds.per_client_cost:
            why = f"at most {bounds.per_client_cost} faces' worth of work at a time from one visitor"
        elif heavy and sum(t.heavy for _, t in live()) >= bounds.heavy_total:
            why = f"{bounds.heavy_total} zips, morphs and large grids are waiting already; try again in a minute"
        if why:
            log.info("rejected a queue request from %s: %s", visitor, why)
            return False, refusal(f"Busy: {why}."), "validator_error"
        ok, event_id, state = await original(body, request, username)
        if ok:
            tickets[event_id] = Ticket(visitor, body.session_hash, cost, heavy)
        return ok, event_id, state

    async def remove_from_queue(event_id: str):
        tickets.pop(event_id, None)
        return await original_remove(event_id)

    queue.push, queue.remove_from_queue = push, remove_from_queue
    return tickets
