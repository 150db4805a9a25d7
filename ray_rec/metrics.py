"""Ranking metrics shared by every evaluation (toy model, SASRec, generative models).

All functions are vectorised numpy; a *rank* is 0-based (0 = the target came first) and a miss is
``np.inf``. With ``r`` the rank of the single relevant item of a user:

    HR@K   = mean over users of 1[r < K]
    NDCG@K = mean over users of 1[r < K] / log2(r + 2)

(one relevant item, so the ideal DCG is 1). Ties in scores count against the target: a target
tied with ``t`` other items is ranked after all of them, so a constant model scores 0, not 1.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

DEFAULT_KS = (5, 10, 20)


def ranks_from_scores(scores: np.ndarray, targets: np.ndarray, exclude: Iterable[int] = ()) -> np.ndarray:
    """Full-ranking rank of each target.

    scores: (B, V) float, higher is better; targets: (B,) int in [0, V); exclude: columns never
    ranked (e.g. the padding id 0) -> (B,) float ranks (ties pessimistic, see module docstring).
    """
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    if scores.ndim != 2 or targets.shape != (scores.shape[0],):
        raise ValueError(f"scores must be (B, V) and targets (B,); got {scores.shape} and {targets.shape}")
    if targets.size and (targets.min() < 0 or targets.max() >= scores.shape[1]):
        raise ValueError("targets must lie in [0, V)")
    excluded = np.zeros(scores.shape[1], dtype=bool)
    excluded[list(exclude)] = True
    if excluded[targets].any():
        raise ValueError("a target is an excluded column (e.g. padding)")
    target_scores = scores[np.arange(len(targets)), targets][:, None]
    competing = ~excluded[None, :]
    ahead = ((scores >= target_scores) & competing).sum(axis=1) - 1  # minus the target itself
    return ahead.astype(np.float64)


def ranks_from_lists(predictions: np.ndarray | list, targets: np.ndarray) -> np.ndarray:
    """Rank of each target in a ranked prediction list (generative models, top-N retrieval).

    predictions: (B, N) item ids, best first (-1 = empty slot); targets: (B,) -> (B,) ranks,
    ``inf`` where the target is not in the list. Only the first occurrence counts.
    """
    preds = np.asarray(predictions)
    targets = np.asarray(targets)
    if preds.ndim != 2 or targets.shape != (preds.shape[0],):
        raise ValueError(f"predictions must be (B, N) and targets (B,); got {preds.shape} and {targets.shape}")
    hit = preds == targets[:, None]
    first = hit.argmax(axis=1).astype(np.float64)
    first[~hit.any(axis=1)] = np.inf
    return first


def user_hr_ndcg(ranks: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-user HR@K and NDCG@K from 0-based ranks (inf = miss) -> two (B,) float arrays: 1/0 hits and
    ``1 / log2(rank + 2)`` inside the top K, else 0 (one relevant item per user, so IDCG = 1)."""
    if k <= 0:
        raise ValueError(f"K must be positive, got {k}")
    ranks = np.asarray(ranks, dtype=np.float64)
    inside = ranks < k
    return inside.astype(np.float64), np.where(inside, 1.0 / np.log2(np.where(inside, ranks, 0) + 2.0), 0.0)


def hr_ndcg(ranks: np.ndarray, ks: Iterable[int] = DEFAULT_KS) -> dict[str, float]:
    """HR@K and NDCG@K from 0-based ranks (inf = miss) -> {"hr@K": .., "ndcg@K": ..}: the means of
    :func:`user_hr_ndcg` (0 for no users)."""
    out: dict[str, float] = {}
    for k in ks:
        hit, ndcg = user_hr_ndcg(ranks, k)
        out[f"hr@{k}"] = float(hit.mean()) if hit.size else 0.0
        out[f"ndcg@{k}"] = float(ndcg.mean()) if ndcg.size else 0.0
    return out


def format_table(rows: dict[str, dict[str, float]], keys: Iterable[str]) -> str:
    """A markdown table: one row per model, one column per metric key."""
    keys = list(keys)
    lines = ["| model | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for name, metrics in rows.items():
        cells = [f"{metrics[k]:.4f}" if k in metrics else "" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
