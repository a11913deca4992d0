"""How far apart two sets of latent frames are: the numbers behind "did the adapter move the sound".

A set is every frame of every clip stacked, shape (N, C): frames are C-dim points (C = 64 on the
release, 8 on the demo model) and a set's distribution is what a style looks like in latent space.

- `frechet`: the Fréchet distance between Gaussians fitted to the two sets (the FID formula,
  ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2), on latent frames instead of Inception
  features), with scipy's matrix square root. It sees the mean and covariance only.
- `mmd`: the squared maximum mean discrepancy with an RBF kernel (unbiased estimate), which also
  sees shapes a Gaussian fit misses. The bandwidth is fixed from the reference set, so MMDs of
  different sources against the same reference are comparable.

Both are 0 for a set against itself and grow as the distributions part. Numpy and scipy only.
"""
from __future__ import annotations

import numpy as np
from scipy import linalg
from scipy.spatial.distance import cdist

MMD_MAX_FRAMES = 2000  # the kernel matrix is N x N: each set is subsampled (seeded) to this many frames


def _frames(x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(f"Expected frames as an (N, C) array with N >= 2, got shape {a.shape}.")
    return a


def gaussian(frames) -> tuple[np.ndarray, np.ndarray]:
    """(mean (C,), covariance (C, C)) of a frame set."""
    a = _frames(frames)
    return a.mean(axis=0), np.cov(a, rowvar=False)


def frechet_from_stats(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray,
                       eps: float = 1e-6) -> float:
    diff = mu_a - mu_b
    covmean, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    if not np.isfinite(covmean).all():  # a singular product (e.g. a constant channel): nudge both diagonals
        offset = np.eye(cov_a.shape[0]) * eps
        covmean = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    covmean = np.real(covmean)  # sqrtm of a product of PSD matrices is real up to rounding
    return float(max(0.0, diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean)))


def frechet(a, b) -> float:
    """Fréchet distance between the Gaussian fits of frame sets `a` and `b`."""
    return frechet_from_stats(*gaussian(a), *gaussian(b))


def _subsample(a: np.ndarray, n: int, seed: int) -> np.ndarray:
    if a.shape[0] <= n:
        return a
    return a[np.random.default_rng(seed).choice(a.shape[0], n, replace=False)]


def bandwidth(reference, seed: int = 0) -> float:
    """The median pairwise distance within the reference set: the RBF kernel's length scale."""
    r = _subsample(_frames(reference), MMD_MAX_FRAMES, seed)
    d = cdist(r, r)
    med = float(np.median(d[np.triu_indices_from(d, k=1)]))
    return med if med > 0 else 1.0


def mmd(a, b, sigma: float, seed: int = 0) -> float:
    """Unbiased squared MMD between frame sets `a` and `b` with the kernel exp(-d^2 / (2 sigma^2))."""
    x = _subsample(_frames(a), MMD_MAX_FRAMES, seed)
    y = _subsample(_frames(b), MMD_MAX_FRAMES, seed + 1)

    def k(p, q):
        return np.exp(-cdist(p, q, "sqeuclidean") / (2.0 * sigma * sigma))

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    n, m = x.shape[0], y.shape[0]
    xx = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    yy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(xx + yy - 2.0 * kxy.mean())
