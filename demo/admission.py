"""What one visitor may ask of a public server: small requests, small pictures, a bounded share of the queue.

- Request bodies: every input of this app fits in a few hundred bytes, so bodies over
  `ANIME_GAN_MAX_BODY` (64 KiB) are refused with 413 before Gradio reads them (Gradio keeps a
  request's inputs in its per-session state, so 25 bodies of 64 MiB took 1.7 GB that never came back).
- Uploads: only the Your-face tab takes a file, one picture of at most UPLOAD_BYTES; anything larger
  gets 403, and a visitor may upload at most `uploads_per_minute` pictures a minute (429 beyond;
  refused ones count too). The handler reads the picture and deletes it at once (demo/handlers.py).
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
import time
from dataclasses import dataclass
from types import SimpleNamespace

from starlette.datastructures import Headers

from core.pictures import MAX_BYTES
from demo.costs import Costing
from demo.visitors import ProxyTrust, client_of

log = logging.getLogger("anime_gan.app")
UPLOAD_PATHS = ("/gradio_api/upload", "/upload")


UPLOAD_BYTES = MAX_BYTES + 64 * 1024  # one picture (core/pictures.py) and its multipart envelope
ALL_UPLOADS = 10  # all visitors together: ten visitors' worth a minute, so unread pictures never fill the disk


class BodyLimit:
    """ASGI middleware: 413 for a body over `max_bytes`; for the upload route, 403 over UPLOAD_BYTES
    and 429 over `uploads_per_minute` from one visitor (a person tries a few pictures, a script many).

    A body with a Content-Length is judged by it; one without (chunked transfer) is read here first,
    up to the limit, and handed on whole: an exception raised from inside Gradio's own body parsing
    would come back as its 400 "There was an error parsing the body", with no line in our log.
    Buffering costs at most the limit per request, which the limit already allows."""

    def __init__(self, app, max_bytes: int = 64 * 1024, trust: ProxyTrust = ProxyTrust(), uploads_per_minute: int = 6):
        self.app, self.max_bytes, self.trust, self.uploads_per_minute = app, max_bytes, trust, uploads_per_minute
        self.uploads: dict[str, list[float]] = {}  # visitor -> times of their uploads in the last minute
        self.all_uploads: list[float] = []          # everyone's, capped at ALL_UPLOADS x the per-visitor rate

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        limit, what = self.max_bytes, "request"
        if any(path.rstrip("/").endswith(p) for p in UPLOAD_PATHS):
            limit, what = UPLOAD_BYTES, "upload"
            refusal = self._upload_refusal(scope)
            if refusal:
                log.info("rejected an upload to %s: %s", path, refusal)
                return await _reply(send, 429, f"{refusal}; try again in a minute")
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit():
            if int(length) > limit:
                log.info("rejected %s body of %s bytes to %s (at most %d)", what, length.decode(), path, limit)
                return await _too_large(send, what, limit)
            return await self.app(scope, receive, send)  # the server holds the body to its Content-Length
        messages, seen = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":  # the client went away
                break
            seen += len(message.get("body", b""))
            if seen > limit:
                log.info("rejected a streamed %s body to %s over %d bytes (no Content-Length)", what, path, limit)
                return await _too_large(send, what, limit)
            if not message.get("more_body"):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()
        await self.app(scope, replay, send)

    def _upload_refusal(self, scope) -> str | None:
        """Why this upload is one too many (per visitor, or all together), or None to take it."""
        client = scope.get("client") or ("?", 0)
        visitor = client_of(SimpleNamespace(client=SimpleNamespace(host=client[0]), headers=Headers(scope=scope)),
                            self.trust)
        now = time.monotonic()
        self.all_uploads = [t for t in self.all_uploads if now - t < 60]
        if len(self.all_uploads) >= ALL_UPLOADS * self.uploads_per_minute:
            return f"the server takes at most {ALL_UPLOADS * self.uploads_per_minute} pictures a minute from everyone"
        recent = [t for t in self.uploads.get(visitor, []) if now - t < 60]
        for gone in [v for v, times in list(self.uploads.items()) if not times or now - times[-1] >= 60]:
            self.uploads.pop(gone, None)  # the map holds only the last minute's visitors
        if len(recent) >= self.uploads_per_minute:
            self.uploads[visitor] = recent
            return f"at most {self.uploads_per_minute} pictures a minute from one visitor"
        self.uploads[visitor] = recent + [now]
        self.all_uploads.append(now)
        return None


async def _too_large(send, what: str, limit: int) -> None:
    if what == "upload":  # forbidden, as any upload was before the Your-face tab: only one small picture is taken
        return await _reply(send, 403, f"this app takes one picture of at most {MAX_BYTES // 2**20} MiB")
    return await _reply(send, 413, f"request too large: at most {limit} bytes")


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
