"""The app's settings, read once from the environment (README: "The app and its API")."""
from __future__ import annotations

import os
from dataclasses import dataclass

from core.errors import UserError
from core.limits import LIMITS


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


def _flag(name: str, default: bool) -> bool:
    raw = (os.environ.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw not in ("0", "1", "true", "false", "yes", "no"):
        raise UserError(f"{name} must be 1 or 0, got {raw[:20]!r}")
    return raw in ("1", "true", "yes")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 7860
    device: str = "auto"            # ANIME_GAN_DEVICE: auto | cpu | cuda
    model: str | None = None        # ANIME_GAN_MODEL: a model name or an .onnx path (default: generator)
    max_count: int = LIMITS.zip_faces   # ANIME_GAN_MAX_COUNT: faces per zip, at most the limit
    file_ttl_s: int = 900           # ANIME_GAN_FILE_TTL: seconds a made file stays downloadable
    queue: int = 64                 # ANIME_GAN_QUEUE: requests waiting at most
    sessions: int = 256             # ANIME_GAN_SESSIONS: recent sessions whose Gradio state stays in memory
    max_body: int = 64 * 1024       # ANIME_GAN_MAX_BODY: bytes of one request body (every input fits in far less)
    per_client: int = 8             # ANIME_GAN_PER_CLIENT: requests waiting or running per visitor
    per_client_heavy: int = 2       # ANIME_GAN_PER_CLIENT_HEAVY: zips and morphs waiting or running per visitor
    trust_proxy: bool = False       # ANIME_GAN_TRUST_PROXY: visitors by X-Forwarded-For (on by default in a Space)
    workdir: str | None = None      # ANIME_GAN_WORKDIR: where made files go (default: inside GRADIO_TEMP_DIR)

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
                   trust_proxy=_flag("ANIME_GAN_TRUST_PROXY", "SPACE_ID" in e),
                   workdir=e.get("ANIME_GAN_WORKDIR") or None)
