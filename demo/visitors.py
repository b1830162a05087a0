"""Who a visitor is: the address their requests come from, in a form a client cannot choose.

Behind a proxy (a Hugging Face Space) every connection comes from the proxy, and the proxy appends
the address it saw to `X-Forwarded-For`. Whatever a client wrote into that header itself stays to
the left, so the visitor is read from the right (as uvicorn's and Starlette's proxy-header handling
do), never from the first entry:

- `off`: the connection's own address (no proxy);
- `private` (the default in a Space): the right-most entry that is not a private, loopback or
  link-local address, so any number of proxies on the private network are skipped;
- `N` (1-16): exactly N proxies append to the header: the N-th entry from the right.

The header counts only when the connection itself comes from a private or loopback address (the
proxy); anyone connecting directly is known by their connection.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from core.errors import UserError

MAX_HOPS = 16


@dataclass(frozen=True)
class ProxyTrust:
    mode: str = "off"      # off | private | hops
    hops: int = 0

    @classmethod
    def parse(cls, text: str | None, default: str = "off") -> "ProxyTrust":
        """ANIME_GAN_TRUST_PROXY's value: 0/off/false, 1/on/true/private (behind a private proxy), hops=N."""
        raw = (text or "").strip().lower() or default
        if raw in ("0", "off", "false", "no"):
            return cls("off")
        if raw in ("1", "on", "true", "yes", "private"):
            return cls("private")
        if raw.startswith("hops="):
            n = raw[5:]
            if n.isdigit() and 1 <= int(n) <= MAX_HOPS:
                return cls("hops", int(n))
        raise UserError(f"ANIME_GAN_TRUST_PROXY must be 0, 1 (behind a private proxy) or hops=N (N from 1 to "
                        f"{MAX_HOPS}), got {raw[:20]!r}")

    @property
    def on(self) -> bool:
        return self.mode != "off"


# Where proxies live: private networks, loopback, link-local and carrier-grade NAT (cloud load balancers).
INTERNAL = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8",
                                              "169.254.0.0/16", "100.64.0.0/10", "::1/128", "fc00::/7", "fe80::/10")]


def internal(address: str) -> bool:
    """A private, loopback, link-local or carrier-grade NAT address: where proxies live."""
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    return any(ip in net for net in INTERNAL if net.version == ip.version)


def _entries(headers) -> list[str]:
    values = headers.getlist("x-forwarded-for") if hasattr(headers, "getlist") else [headers.get("x-forwarded-for") or ""]
    return [e.strip() for v in values for e in v.split(",") if e.strip()]


def client_of(request, trust: ProxyTrust | bool = ProxyTrust()) -> str:
    """The visitor's address for the per-visitor bounds (at most 64 characters)."""
    if isinstance(trust, bool):  # callers from before the modes: True meant "behind a Space's proxy"
        trust = ProxyTrust("private" if trust else "off")
    client = getattr(request, "client", None)
    peer = getattr(client, "host", None) or "?"
    if not trust.on or not internal(peer):
        return peer
    entries = _entries(getattr(request, "headers", None) or {})
    if trust.mode == "hops":
        chosen = entries[-trust.hops] if len(entries) >= trust.hops else None
    else:
        chosen = next((e for e in reversed(entries) if not internal(e)), None)
    return (chosen or peer)[:64]
