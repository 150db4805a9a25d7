"""HR@K / NDCG@K against hand-computed values: ties, K beyond the catalogue, padding, misses."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ray_rec.metrics import hr_ndcg, ranks_from_lists, ranks_from_scores


def test_ranks_from_scores_with_padding_and_ties():
    scores = np.array([
        [9.0, 0.1, 0.5, 0.3],  # padding column 0 has the top score but is never ranked
        [0.0, 0.2, 0.2, 0.9],  # target 1 tied with item 2 -> ranked after it
        [0.0, 0.7, 0.7, 0.7],  # three-way tie: target is last of three
    ])
    ranks = ranks_from_scores(scores, np.array([2, 1, 3]), exclude=[0])
    assert ranks.tolist() == [0.0, 2.0, 2.0]


def test_hr_ndcg_hand_computed():
    ranks = np.array([0.0, 2.0, 4.0, np.inf])
    m = hr_ndcg(ranks, ks=(1, 3, 5, 10))
    assert m["hr@1"] == pytest.approx(0.25)
    assert m["hr@3"] == pytest.approx(0.5)
    assert m["hr@5"] == pytest.approx(0.75)
    assert m["hr@10"] == pytest.approx(0.75)
    assert m["ndcg@1"] == pytest.approx(1 / 4)
    assert m["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / 4)
    assert m["ndcg@5"] == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(6)) / 4)


def test_k_larger_than_catalogue():
    scores = np.array([[0.0, 0.3, 0.1], [0.0, 0.1, 0.3]])
    m = hr_ndcg(ranks_from_scores(scores, np.array([1, 1]), exclude=[0]), ks=(50,))
    assert m["hr@50"] == 1.0
    assert m["ndcg@50"] == pytest.approx((1 + 1 / math.log2(3)) / 2)


def test_constant_scores_score_zero():
    scores = np.zeros((3, 6))
    m = hr_ndcg(ranks_from_scores(scores, np.array([1, 2, 3]), exclude=[0]), ks=(1, 3))
    assert m["hr@1"] == 0.0 and m["hr@3"] == 0.0


def test_ranks_from_lists_first_occurrence_and_miss():
    preds = np.array([[5, 7, 7, -1], [1, 2, 3, 4], [3, 3, 3, 3]])
    ranks = ranks_from_lists(preds, np.array([7, 9, 3]))
    assert ranks[0] == 1.0 and math.isinf(ranks[1]) and ranks[2] == 0.0


def test_bad_shapes_and_padding_target():
    with pytest.raises(ValueError, match="excluded"):
        ranks_from_scores(np.zeros((1, 3)), np.array([0]), exclude=[0])
    with pytest.raises(ValueError, match=r"\(B, V\)"):
        ranks_from_scores(np.zeros(3), np.array([0]))
    with pytest.raises(ValueError, match=r"\[0, V\)"):
        ranks_from_scores(np.zeros((1, 3)), np.array([3]))
