"""RQ-KMeans: L levels of faiss k-means, each fitted on the residuals the previous levels leave.

Level 1 clusters the item vectors into K_1 centroids; level 2 clusters ``x - C_1[c_1]``; and so on.
No balance constraint: frequent regions of the embedding space get crowded codes, so items may
collide (see ``constrained.py`` for the balanced variant). Example::

    quantizer = fit_rqkmeans(x, sizes=[256, 256, 256], seed=0)
    codes = quantizer.encode(x)          # (n, 3) int64
"""

from __future__ import annotations

import numpy as np

from ray_rec.sid.quantize import ResidualCodebooks, check_embeddings, kmeans, nearest


def fit_rqkmeans(x: np.ndarray, sizes: list[int], seed: int = 0, iters: int = 30,
                 threads: int = 1) -> ResidualCodebooks:
    """(n, d) item vectors -> L residual codebooks of shapes (K_l, d); level l is seeded ``seed + l``."""
    x = check_embeddings(x, min_items=max(sizes))
    residual = x.copy()
    codebooks = []
    for level, k in enumerate(sizes):
        centroids = kmeans(residual, k, seed=seed + level, iters=iters, threads=threads)
        residual -= centroids[nearest(residual, centroids)]
        codebooks.append(centroids)
    return ResidualCodebooks(codebooks)
