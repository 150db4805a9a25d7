"""Rewards of a group of ranked rollouts, and GRPO's group-relative advantages. Pure numpy.

A rollout group is the ``G`` beams that constrained beam search returns for one user, best first;
each beam is one item (``-1`` where the beam is no valid item, which the trie makes impossible). The
rewards, all (B, G) float arrays:

* ``rule``     1 where the beam is the user's next item, else 0;
* ``ranking``  ``rule``, plus a penalty on the wrong beams of a group that found the right item: the
  wrong beam at rank ``r`` (0-based) gets ``-w_r / sum(w)`` with ``w_r = 1 / log2(r + 2)``, the
  NDCG discount, summed over the group's wrong beams (so every found group is penalised -1 in all). A wrong item ranked above the right one costs the most, so the update pushes the
  right item up the list rather than only making it likelier (MiniOneRec's "ranking" reward is
  built on the same idea). Groups that missed get no penalty: every beam would be pushed down alike,
  and their advantages are 0 anyway;
* ``cf``       a collaborative-filtering score of each beam's item for the user (our SASRec's softmax
  probability, :func:`cf_reward`), in [0, 1]: it rewards plausible near-misses that the rule reward
  scores 0.

``total = ranking-or-rule + cf_weight * cf``. GRPO normalises each group: ``A = (r - mean) / (std + eps)``,
so only differences within a group matter and a group whose beams all score the same teaches nothing.

    >>> rule_reward(np.array([[5, 7, 9]]), np.array([7])).tolist()
    [[0.0, 1.0, 0.0]]
    >>> np.round(ranking_reward(np.array([[5, 7, 9]]), np.array([7])), 3).tolist()
    [[-0.667, 1.0, -0.333]]
"""

from __future__ import annotations

import numpy as np


def rule_reward(items: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """items (B, G) int, targets (B,) int -> (B, G) float64: 1 where the beam is the target."""
    return (items == targets[:, None]).astype(np.float64)


def ranking_reward(items: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Rule reward plus a rank penalty on the wrong beams of groups that hold the target (module docstring)."""
    hit = rule_reward(items, targets)
    wrong = hit.any(axis=1, keepdims=True) & (hit == 0)
    discount = np.where(wrong, 1.0 / np.log2(np.arange(items.shape[1]) + 2.0), 0.0)
    # each found group's penalties sum to -1 over its wrong beams, whatever rank the right item had
    total = discount.sum(axis=1, keepdims=True)
    return hit - discount / np.where(total > 0, total, 1.0)


def cf_reward(probabilities: np.ndarray, items: np.ndarray) -> np.ndarray:
    """probabilities (B, N) a recommender's next-item distribution per user; items (B, G) beam items
    (-1 = none) -> (B, G) the probability of each beam's item (0 for -1)."""
    safe = np.where(items >= 0, items, 0)
    picked = np.take_along_axis(probabilities, safe, axis=1)
    return np.where(items >= 0, picked, 0.0)


def group_advantages(rewards: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """(B, G) rewards -> (B, G) advantages ``(r - mean_group) / (std_group + eps)`` (population std)."""
    mean = rewards.mean(axis=1, keepdims=True)
    std = rewards.std(axis=1, keepdims=True)
    return (rewards - mean) / (std + eps)
