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

``total = ranking-or-rule + cf_weight * cf``. Advantages are centred per group, ``r - mean_group``, so only
differences within a group matter and a group whose beams all score the same teaches nothing. They are
then scaled (``scale``, the choice TRL's ``GRPOConfig.scale_rewards`` offers):

* ``group``  divided by the group's std (GRPO as published): every group with any spread gets unit-size
  advantages, so a small weight cannot keep a dense reward (``cf``) from steering the groups that missed;
* ``batch``  divided by the std of all the rewards of the (micro-)batch: a group's pull is proportional
  to its reward spread, so ``cf_weight`` sets how much ``cf`` counts against a hit;
* ``none``   not divided (Dr. GRPO's choice).

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


def group_advantages(rewards: np.ndarray, scale: str = "group", eps: float = 1e-4) -> np.ndarray:
    """(B, G) rewards -> (B, G) advantages ``(r - mean_group) / (std + eps)``, std the population std of
    the group (``scale="group"``) or of all of ``rewards`` (``"batch"``); ``"none"``: ``r - mean_group``."""
    centred = rewards - rewards.mean(axis=1, keepdims=True)
    if scale == "none":
        return centred
    if scale == "group":
        return centred / (rewards.std(axis=1, keepdims=True) + eps)
    if scale == "batch":
        return centred / (rewards.std() + eps)
    raise ValueError(f"scale must be 'group', 'batch' or 'none', got {scale!r}")
