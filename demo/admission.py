"""What one visitor may ask of a public server: small requests, no uploads, a bounded share of the queue.

- Request bodies: every input of this app fits in a few hundred bytes, so bodies over
  `ANIME_GAN_MAX_BODY` (64 KiB) are refused with 413 before Gradio reads them (Gradio keeps a
  request's inputs in its per-session state, so 25 bodies of 64 MiB took 1.7 GB that never came back).
- Uploads: no component takes a file, so Gradio's upload route answers 403.
- The queue: a visitor (by address, and by session) has at most `per_client` requests waiting or
  running, and at most `per_client_heavy` zips or morphs; all visitors together have at most
  `heavy_total` of those waiting, so single faces always find room in the queue.

The body limit is ASGI middleware, given to Gradio's FastAPI app at launch (`app_kwargs`); the queue
bound wraps the queue's `push`, the one place where Gradio admits a request.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

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
    per_client: int = 8           # requests waiting or running, per address and per session
    per_client_heavy: int = 2     # zips and morphs, per address and per session
    heavy_total: int = 16         # zips and morphs waiting, all visitors together
    trust_proxy: bool = False     # the visitor's address is X-Forwarded-For's first entry


def client_of(request, trust_proxy: bool = False) -> str:
    """The visitor's address. Behind a proxy (a Hugging Face Space) every connection comes from the
    proxy's internal address, so one per-address bound would be shared by all visitors; there the
    proxy's X-Forwarded-For names the visitor. A visitor can forge that header, so it only loosens
    the per-address bound: the per-session bound and the total of heavy jobs still hold."""
    if trust_proxy:
        headers = getattr(request, "headers", None) or {}
        forwarded = (headers.get("x-forwarded-for") or "").split(",")[0].strip()
        if forwarded:
            return forwarded[:64]
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "?"


def refusal(message: str) -> list[dict]:
    """A queue refusal that reaches the visitor with its reason. Gradio answers a "queue_full" push
    with 503, which both its page and gradio_client replace by a generic "Queue is full! Please try
    again."; a validation failure (422) is the one refusal whose text they show (the page under the
    first input and as an error, gradio_client as its ValidationError's message), in this form."""
    return [{"__type__": "validate", "is_valid": False, "parameter_name": "queue", "message": message}]


def bound_queue(blocks, heavy_groups: tuple[str, ...], bounds: QueueBounds = QueueBounds()) -> None:
    """Wrap the queue's push so no visitor fills the queue; refusals are one line, for the refused
    visitor only."""
    queue = blocks._queue
    original = queue.push

    async def push(body, request, username):
        if body.fn_index is not None:
            from gradio import route_utils

            try:
                fn = route_utils.get_fn(blocks, None, body)
            except Exception:  # noqa: BLE001 - an unknown function: Gradio answers it as before
                return await original(body, request, username)
            heavy = fn.concurrency_id in heavy_groups
            waiting = [e for q in list(queue.event_queue_per_concurrency_id.values()) for e in list(q.queue)]
            running = [e for job in list(queue.active_jobs) if job for e in job]
            host = client_of(request, bounds.trust_proxy)
            mine = [e for e in waiting + running
                    if e.session_hash == body.session_hash or client_of(e.request, bounds.trust_proxy) == host]
            why = None
            if len(mine) >= bounds.per_client:
                why = f"at most {bounds.per_client} requests at a time from one visitor"
            elif heavy and sum(e.concurrency_id in heavy_groups for e in mine) >= bounds.per_client_heavy:
                why = f"at most {bounds.per_client_heavy} zips or morphs at a time from one visitor"
            elif heavy and sum(e.concurrency_id in heavy_groups for e in waiting) >= bounds.heavy_total:
                why = f"{bounds.heavy_total} zips and morphs are waiting already; try again in a minute"
            if why:
                log.info("rejected a queue request from %s: %s", host, why)
                return False, refusal(f"Busy: {why}."), "validator_error"
        return await original(body, request, username)

    queue.push = push
