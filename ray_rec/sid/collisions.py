"""Collisions (two items, one SID) and the two ways this package removes them.

* :func:`balance_last_level`: items whose SIDs collide are re-assigned at the last level by an
  entropic optimal-transport plan (:func:`sinkhorn`) in which every free last-level code takes at most
  one item, then rounded greedily to distinct codes. Items keep their prefix; the code each one gets
  is close to its residual. Used by RQ-VAE and RQ-KMeans+.
* :func:`add_dedup_level`: items that still share a whole SID get one more level numbering them
  0..g-1 inside their group of g; other items get none. The SID set stays prefix-free, so a decoder
  knows where an item ends. Codes of such a variable-length set are an (n, L+1) array padded with -1.

All functions are numpy only and deterministic (ties resolved by item order).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

PAD = -1  # code of a missing de-duplication level in a padded (n, L+1) array


def sid_groups(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, L) codes (-1 padding allowed) -> (group of each item (n,), items per group (G,))."""
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return inverse.reshape(-1), counts


def colliding(codes: np.ndarray) -> np.ndarray:
    """(n, L) codes -> (n,) bool: the item shares its whole SID with another item."""
    if len(codes) == 0:
        return np.zeros(0, dtype=bool)
    inverse, counts = sid_groups(codes)
    return counts[inverse] > 1


def add_dedup_level(codes: np.ndarray) -> np.ndarray:
    """(n, L) -> (n, L+1) with the rank of each item inside its collision group as the last code
    (-1 for items whose SID is unique); returned unchanged when nothing collides.

    >>> add_dedup_level(np.array([[1, 2], [1, 2], [3, 4]])).tolist()
    [[1, 2, 0], [1, 2, 1], [3, 4, -1]]
    """
    inverse, counts = sid_groups(codes)
    if counts.max(initial=0) <= 1:
        return codes
    order = np.argsort(inverse, kind="stable")            # items grouped, item order kept inside
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(codes), dtype=np.int64)
    rank[order] = np.arange(len(codes)) - starts[inverse[order]]
    rank[counts[inverse] == 1] = PAD
    return np.concatenate([codes, rank[:, None]], axis=1)


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def sinkhorn(cost: np.ndarray, row_mass: np.ndarray, col_mass: np.ndarray, epsilon: float,
             iters: int = 100) -> np.ndarray:
    """Entropic optimal transport: (m, K) cost, (m,) and (K,) masses of equal sums -> (m, K) plan.

    Log-domain scaling iterations of ``P = exp((u_i + v_j - C_ij) / eps)`` so that the row sums of
    ``P`` approach ``row_mass`` and its column sums ``col_mass``.
    """
    log_k = -np.asarray(cost, dtype=np.float64) / epsilon
    log_r, log_c = np.log(row_mass), np.log(col_mass)
    u, v = np.zeros(len(log_r)), np.zeros(len(log_c))
    for _ in range(iters):
        u = log_r - _logsumexp(log_k + v[None, :], axis=1)
        v = log_c - _logsumexp(log_k + u[:, None], axis=0)
    return np.exp(log_k + u[:, None] + v[None, :])


def distinct_codes(cost: np.ndarray, epsilon: float, iters: int) -> np.ndarray:
    """(m, K) cost -> (m,) distinct column per row near the min-cost assignment (-1: row left out).

    Every code carries at most one item in the transport plan: a dummy row takes the mass of the
    K - m codes left unused (m < K), or a dummy code the m - K items left out (m > K). The plan's
    largest entries are then taken greedily while their row and column are free.
    """
    m, k = cost.shape
    scale = float(np.median(cost)) or 1.0
    if m <= k:
        padded, rows, cols = np.vstack([cost, np.zeros((1, k))]), np.r_[np.ones(m), k - m], np.ones(k)
    else:
        padded, rows, cols = np.hstack([cost, np.zeros((m, 1))]), np.ones(m), np.r_[np.ones(k), m - k]
    plan = sinkhorn(padded, rows + 1e-9, cols + 1e-9, epsilon * scale, iters)[:m, :k]
    out = np.full(m, -1, dtype=np.int64)
    used_row, used_col = np.zeros(m, bool), np.zeros(k, bool)
    for flat in np.argsort(-plan, axis=None, kind="stable"):
        i, j = divmod(int(flat), k)
        if not used_row[i] and not used_col[j]:
            out[i], used_row[i], used_col[j] = j, True, True
            if used_row.all() or used_col.all():
                break
    return out


def balance_last_level(codes: np.ndarray, cost_fn: Callable[[np.ndarray], np.ndarray],
                       epsilon: float = 0.05, iters: int = 100) -> np.ndarray:
    """Re-assign the last code of colliding items so that, prefix by prefix, SIDs become distinct.

    ``codes`` (n, L); ``cost_fn(rows)`` gives the (len(rows), K_L) last-level costs of those items.
    Items with a unique SID keep theirs and their codes; the colliding items of a prefix share the
    codes left free. When a prefix has more colliding items than free codes, the items the plan
    leaves out keep their code (and collide, for the de-duplication level to separate).
    """
    codes = codes.copy()
    hit = colliding(codes)
    if not hit.any() or codes.shape[1] == 0:
        return codes
    rows = np.flatnonzero(hit)
    cost = np.asarray(cost_fn(rows), dtype=np.float64)
    prefix_of = np.unique(codes[:, :-1], axis=0, return_inverse=True)[1].reshape(-1)
    for prefix in np.unique(prefix_of[rows]):
        members = rows[prefix_of[rows] == prefix]
        taken = np.unique(codes[(prefix_of == prefix) & ~hit, -1])
        free = np.setdiff1d(np.arange(cost.shape[1]), taken)
        if len(free) == 0:
            continue
        pick = distinct_codes(cost[np.searchsorted(rows, members)][:, free], epsilon, iters)
        codes[members[pick >= 0], -1] = free[pick[pick >= 0]]
    return codes
