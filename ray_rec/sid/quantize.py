"""Shared residual-quantization math: input checks, nearest-code search, faiss k-means, codebooks.

A residual quantizer with L codebooks ``C_l`` (K_l, d) encodes a vector ``x`` level by level:
``c_1 = argmin_k ||x - C_1[k]||``, then the residual ``x - C_1[c_1]`` is encoded by ``C_2``, and so on;
``x`` is reconstructed as ``sum_l C_l[c_l]``. Every fitted quantizer of this package (see
:class:`Quantizer`) exposes the same three functions so the Ray orchestration (``build.py``) can split
assignment across tasks and the collision handling can re-assign last levels, whatever the method.
Everything here is plain numpy/faiss, deterministic for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ray_rec.errors import InputError

_CHUNK = 8192  # rows per distance block: bounds memory at (chunk, K) floats


def check_embeddings(x: np.ndarray, min_items: int = 1, dim: int | None = None,
                     where: str = "embeddings") -> np.ndarray:
    """Validate item vectors; return them as a C-contiguous float32 (n, d) array.

    Raises :class:`InputError` naming ``where`` on a non-2-D array, NaN/inf values, fewer than
    ``min_items`` rows (a codebook of K codes needs at least K items) or a dimension other than ``dim``.
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] == 0:
        raise InputError(f"{where}: expected an (items, dim) matrix, got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise InputError(f"{where}: vectors have dimension {x.shape[1]} but the quantizer was fitted on dimension {dim}")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise InputError(f"{where}: {len(rows)} vector(s) hold NaN or infinite values (first at row {rows[0]}); "
                         "re-run the embedding stage or drop those items")
    if x.shape[0] < min_items:
        raise InputError(f"{where}: {x.shape[0]} items but a codebook has {min_items} codes; "
                         f"use codebook_size <= {x.shape[0]} or more items")
    return np.ascontiguousarray(x, dtype=np.float32)


def squared_distances(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(n, d), (K, d) -> (n, K) squared Euclidean distances (float32, clipped at 0)."""
    d = (x * x).sum(1, keepdims=True) - 2.0 * (x @ centroids.T) + (centroids * centroids).sum(1)[None, :]
    return np.maximum(d, 0.0, out=d)


def nearest(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(n, d), (K, d) -> (n,) int64 index of the nearest centroid (ties -> lowest index).

    Computed block by block of rows so memory stays bounded for any catalogue size.
    """
    out = np.empty(len(x), dtype=np.int64)
    for start in range(0, len(x), _CHUNK):
        out[start:start + _CHUNK] = squared_distances(x[start:start + _CHUNK], centroids).argmin(1)
    return out


def kmeans(x: np.ndarray, k: int, seed: int, iters: int = 30, threads: int = 1, restarts: int = 3) -> np.ndarray:
    """faiss k-means: (n, d) float32 -> (k, d) centroids, the best of ``restarts`` random starts.

    One thread by default, so results repeat; several starts because faiss seeds centroids uniformly
    (no k-means++) and a single start can settle in a poor local optimum.
    """
    import faiss

    faiss.omp_set_num_threads(max(1, threads))
    km = faiss.Kmeans(x.shape[1], k, niter=iters, seed=seed, nredo=restarts, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=max(256, -(-len(x) // k)))
    km.train(np.ascontiguousarray(x, dtype=np.float32))
    return np.asarray(km.centroids, dtype=np.float32).reshape(k, x.shape[1])


class Quantizer:
    """A fitted L-level quantizer: what the orchestration and the collision handling need.

    Subclasses are plain picklable objects (numpy arrays, torch state dicts) so a fitted quantizer
    can be put in Ray's object store once and used by many assignment tasks.
    """

    sizes: list[int]
    dim: int

    def encode(self, x: np.ndarray) -> np.ndarray:
        """(n, d) item vectors -> (n, L) int64 codes, each level the nearest code to its residual."""
        raise NotImplementedError

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """(n, L) codes -> (n, d) reconstructed item vectors."""
        raise NotImplementedError

    def last_level_cost(self, x: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """(n, d) vectors with their (n, L) codes -> (n, K_L) squared distance of the last residual to each last-level code."""
        raise NotImplementedError


def residual_encode(x: np.ndarray, codebooks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) -> codes (n, L) int64 and the final residual (n, d)."""
    residual = np.array(x, dtype=np.float32, copy=True)
    codes = np.empty((len(x), len(codebooks)), dtype=np.int64)
    for level, cb in enumerate(codebooks):
        codes[:, level] = nearest(residual, cb)
        residual -= cb[codes[:, level]]
    return codes, residual


def residual_decode(codes: np.ndarray, codebooks: list[np.ndarray]) -> np.ndarray:
    """(n, L) codes -> (n, d) sum of the chosen code vectors."""
    return np.sum([cb[codes[:, level]] for level, cb in enumerate(codebooks)], axis=0).astype(np.float32)


@dataclass
class ResidualCodebooks(Quantizer):
    """Residual k-means codebooks in the input space (RQ-KMeans and its constrained variant)."""

    codebooks: list[np.ndarray]  # L arrays of shape (K_l, d)

    @property
    def sizes(self) -> list[int]:  # type: ignore[override]
        return [len(cb) for cb in self.codebooks]

    @property
    def dim(self) -> int:  # type: ignore[override]
        return int(self.codebooks[0].shape[1])

    def encode(self, x: np.ndarray) -> np.ndarray:
        x = check_embeddings(x, dim=self.dim, where="items to encode")
        return residual_encode(x, self.codebooks)[0]

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return residual_decode(codes, self.codebooks)

    def last_level_cost(self, x: np.ndarray, codes: np.ndarray) -> np.ndarray:
        prefix = residual_decode(codes[:, :-1], self.codebooks[:-1]) if len(self.codebooks) > 1 else 0.0
        return squared_distances(np.asarray(x, np.float32) - prefix, self.codebooks[-1])


def sample_rows(n: int, k: int, seed: int) -> np.ndarray:
    """Sorted indices of ``k`` of ``n`` rows drawn without replacement (all rows when k is 0 or >= n)."""
    if k <= 0 or k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))
