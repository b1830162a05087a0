"""Early checks (--early-checks): at every save, whether the run is going wrong, before its
checkpoint is overwritten, so checkpoint.pt is always the last good state to roll back to.

    checks = EarlyChecks(proxy=load_proxy("metrics/stats/proxy-anime-faces-64.pt", device))
    why = checks.verdict(run, losses_row)     # None, or "D accuracy 0.998 > 0.99"

A run goes wrong when its losses stop being finite, when D tells every image apart (G learns
nothing more), when many faces are near-duplicates of each other (mode collapse), or when the FID
proxy (metrics/proxy.py: TF-Inception's first layers, small enough for any machine) has got much
worse than where this process started. The training loop then rolls back and goes on at half the
learning rates; a second failure in the same process stops the run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.images import to_uint8
from core.seeds import latents


@dataclass
class EarlyChecks:
    proxy: object | None = None        # a metrics.proxy.Proxy, or None: no near-duplicate or proxy check
    n: int = 1000                      # faces per measurement
    max_d_acc: float = 0.99            # D tells every image apart: G learns nothing more
    max_near_duplicates: float = 0.35  # share of faces with a near twin (real images about 1 %; the shipped
    #                                    default 13 %, two collapsed runs 49 and 75 %)
    max_proxy_rise: float = 0.5        # the proxy worse by half since this process started
    first: dict = field(default_factory=dict)  # this process's first measurement

    def verdict(self, run, losses: dict) -> str | None:
        """Why the run must roll back, or None. The first measurement is a baseline: too early to
        judge a fresh run's variety, and the reference for the proxy's rise."""
        if losses.get("d_acc") is not None and losses["d_acc"] > self.max_d_acc:
            return f"D accuracy {losses['d_acc']:.3f} > {self.max_d_acc}"
        if self.proxy is None:
            return None
        now = measure(run, self.proxy, self.n)
        if not self.first:
            self.first = now
            return None
        if now["near_duplicates"] > self.max_near_duplicates:
            return f"{100 * now['near_duplicates']:.0f} % near-duplicate faces"
        if now["proxy"] > self.first["proxy"] * (1 + self.max_proxy_rise):
            return f"FID proxy {now['proxy']:.2f} against {self.first['proxy']:.2f} at this process's start"
        return None


SATURATED_READS = 3  # loss reads in a row (--log-every steps each) before a saturated D stops the run


def saturated(probabilities: bool, means: dict) -> str | None:
    """What D gave every image since the last read when that was exactly 0 or 1, else None.

    Only for a D that ends in a sigmoid: exactly 0 or 1 everywhere means the sigmoid's gradient is
    zero for every image, so neither network learns; such a run stays where it is for good.
    """
    if not probabilities:
        return None
    real, fake = means.get("d_real"), means.get("d_fake")
    if real not in (0.0, 1.0) or fake not in (0.0, 1.0):
        return None
    return f"every real and fake image exactly {real:g}" if real == fake else \
        f"every real image exactly {real:g} and every fake exactly {fake:g}"


def load_proxy(path: str | Path | None, device: torch.device):
    """metrics/proxy.py's file, or None."""
    if not path:
        return None
    from metrics.proxy import Proxy

    return Proxy(Path(path), "cuda" if device.type == "cuda" else "cpu")


@torch.no_grad()
def measure(run, proxy, n: int) -> dict:
    """The FID proxy and the near-duplicate share of n faces from fixed seeds (the generator as shipped)."""
    from metrics.diversity import nearest
    from metrics.kernels import frechet

    g = run.generator_for_export().eval()
    z = torch.from_numpy(latents(range(n), run.recipe.z_dim)).to(run.device)
    y = (torch.arange(n, device=run.device) % run.n_classes) if run.n_classes else None
    faces = np.concatenate([to_uint8(g(z[i:i + 250], None if y is None else y[i:i + 250]).float().cpu().numpy())
                            for i in range(0, n, 250)])
    feats = proxy.features(faces)
    d, _ = nearest(feats, feats, exclude_self=True)
    return {"proxy": frechet(feats.mean(0), np.cov(feats, rowvar=False), proxy.mu, proxy.sigma),
            "near_duplicates": float((d < proxy.info.get("dup_threshold", 0.0)).mean())}
