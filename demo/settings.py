"""The app's settings, read once from the environment (docs/app.md)."""
from __future__ import annotations

import os
from dataclasses import dataclass

from core.errors import UserError
from core.limits import LIMITS
from demo.visitors import ProxyTrust


def _int(name: str, default: int, lo: int, hi: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UserError(f"{name} must be a whole number, got {raw[:20]!r}") from None
    if not lo <= value <= hi:
        raise UserError(f"{name} must be from {lo} to {hi}, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 7860
    device: str = "auto"            # ANIME_GAN_DEVICE: auto | cpu | cuda
    model: str | None = None        # ANIME_GAN_MODEL: a model name or an .onnx path (default: generator)
    max_count: int = LIMITS.zip_faces   # ANIME_GAN_MAX_COUNT: faces per zip, at most the limit
    file_ttl_s: int = 900           # ANIME_GAN_FILE_TTL: seconds a made file stays downloadable
    queue: int = 64                 # ANIME_GAN_QUEUE: requests waiting at most
    sessions: int = 64              # ANIME_GAN_SESSIONS: recent sessions whose Gradio state stays in memory (~0.2 MB each)
    max_body: int = 64 * 1024       # ANIME_GAN_MAX_BODY: bytes of one request body (every input fits in far less)
    per_client: int = 8             # ANIME_GAN_PER_CLIENT: requests waiting or running per visitor
    per_client_heavy: int = 2       # ANIME_GAN_PER_CLIENT_HEAVY: zips, morphs and large grids per visitor
    per_client_cost: int = 2048     # ANIME_GAN_PER_CLIENT_COST: faces' worth of work per visitor (demo/costs.py)
    trust_proxy: ProxyTrust = ProxyTrust()  # ANIME_GAN_TRUST_PROXY: 0, 1 (private proxy) or hops=N (demo/visitors.py)
    workdir: str | None = None      # ANIME_GAN_WORKDIR: where made files go (default: inside GRADIO_TEMP_DIR)
    header_timeout_s: int = 10      # ANIME_GAN_HEADER_TIMEOUT: seconds a request's headers may take (demo/connections.py)
    body_timeout_s: int = 30        # ANIME_GAN_BODY_TIMEOUT: seconds a request's body may take after its headers
    connections: int = 128          # ANIME_GAN_CONNECTIONS: open connections per address (8x that in all)
    uploads_per_minute: int = 6     # ANIME_GAN_UPLOADS_PER_MINUTE: pictures one visitor may upload a minute (Your face)

    @classmethod
    def from_env(cls) -> "Settings":
        e = os.environ
        return cls(host=e.get("GRADIO_SERVER_NAME", cls.host), port=_int("GRADIO_SERVER_PORT", cls.port, 1, 65535),
                   device=e.get("ANIME_GAN_DEVICE", cls.device), model=e.get("ANIME_GAN_MODEL") or None,
                   max_count=_int("ANIME_GAN_MAX_COUNT", cls.max_count, 1, LIMITS.zip_faces),
                   file_ttl_s=_int("ANIME_GAN_FILE_TTL", cls.file_ttl_s, 1, 7 * 86400),
                   queue=_int("ANIME_GAN_QUEUE", cls.queue, 1, 10_000),
                   sessions=_int("ANIME_GAN_SESSIONS", cls.sessions, 1, 100_000),
                   max_body=_int("ANIME_GAN_MAX_BODY", cls.max_body, 1024, 16 * 2**20),
                   per_client=_int("ANIME_GAN_PER_CLIENT", cls.per_client, 1, 1000),
                   per_client_heavy=_int("ANIME_GAN_PER_CLIENT_HEAVY", cls.per_client_heavy, 1, 100),
                   # at least the largest single request (a zip of 1,000 faces), or it could never run
                   per_client_cost=_int("ANIME_GAN_PER_CLIENT_COST", cls.per_client_cost, 1024, 1_000_000),
                   # Every Space sets SPACE_ID; its visitors arrive through the Space's proxies.
                   trust_proxy=ProxyTrust.parse(e.get("ANIME_GAN_TRUST_PROXY"), "private" if "SPACE_ID" in e else "off"),
                   workdir=e.get("ANIME_GAN_WORKDIR") or None,
                   header_timeout_s=_int("ANIME_GAN_HEADER_TIMEOUT", cls.header_timeout_s, 1, 3600),
                   body_timeout_s=_int("ANIME_GAN_BODY_TIMEOUT", cls.body_timeout_s, 1, 3600),
                   connections=_int("ANIME_GAN_CONNECTIONS", cls.connections, 4, 100_000),
                   uploads_per_minute=_int("ANIME_GAN_UPLOADS_PER_MINUTE", cls.uploads_per_minute, 1, 10_000))
