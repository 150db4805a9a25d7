"""Balanced RQ-KMeans: residual k-means whose clusters must hold between ``lo`` and ``hi`` items.

Each level solves k-means with cluster-size bounds (``k-means-constrained``: a min-cost-flow
assignment step), so codes are used evenly and items spread over the SID space: that is what keeps
collisions rare. Items that still share a whole SID get one de-duplication level afterwards
(``collisions.add_dedup_level``, applied by the build). Example::

    quantizer, codes = fit_constrained(x, sizes=[256, 256, 256], seed=0, slack=0.5)

The returned ``codes`` are the balanced assignment of the fitted items; ``quantizer.encode`` assigns
other items to their nearest codes (balance is then approximate).
"""

from __future__ import annotations

import math

import numpy as np

from ray_rec.sid.quantize import ResidualCodebooks, check_embeddings


def size_bounds(n: int, k: int, slack: float) -> tuple[int, int]:
    """Cluster-size bounds ``(lo, hi)`` around n/k: ``lo = floor((1-s) n/k)``, ``hi = ceil((1+s) n/k)``.

    >>> size_bounds(1000, 10, 0.5)
    (50, 150)
    >>> size_bounds(10, 4, 0.0)
    (2, 3)
    """
    lo = max(1, math.floor((1 - slack) * n / k))
    hi = max(lo, math.ceil((1 + slack) * n / k))
    return lo, hi


def fit_constrained(x: np.ndarray, sizes: list[int], seed: int = 0, slack: float = 0.5,
                    n_init: int = 1, max_iter: int = 100) -> tuple[ResidualCodebooks, np.ndarray]:
    """(n, d) item vectors -> (codebooks with L arrays (K_l, d), balanced codes (n, L) int64)."""
    from k_means_constrained import KMeansConstrained

    x = check_embeddings(x, min_items=max(sizes))
    residual = x.astype(np.float64)  # k-means-constrained works in float64
    codebooks, codes = [], np.empty((len(x), len(sizes)), dtype=np.int64)
    for level, k in enumerate(sizes):
        lo, hi = size_bounds(len(x), k, slack)
        # n_jobs=1: k-means-constrained 0.9.1 fails on read-only buffers when n_jobs > 1.
        km = KMeansConstrained(n_clusters=k, size_min=lo, size_max=hi, random_state=seed + level,
                               n_init=n_init, max_iter=max_iter, n_jobs=1)
        labels = np.asarray(km.fit_predict(residual), dtype=np.int64)
        centers = np.asarray(km.cluster_centers_, dtype=np.float64)
        residual -= centers[labels]
        codes[:, level] = labels
        codebooks.append(centers.astype(np.float32))
    return ResidualCodebooks(codebooks), codes
