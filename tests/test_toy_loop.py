"""The toy model and its Ray-free loop: pooling by hand, logits shape, most-popular baseline,
gradient accumulation equivalence, exact resume from a checkpoint."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ray_rec.config import load_config
from ray_rec.toy.config import ToyConfig, ToyModelConfig
from ray_rec.toy.data import leave_one_out, load_sequences
from ray_rec.toy.loop import LocalSession, epoch_order, fit, fit_local, load_state, most_popular
from ray_rec.toy.model import ToyRec, last_position, masked_mean

TINY = ["data.num_users=120", "data.num_items=30", "data.max_len=8", "data.max_seq_len=12",
        "model.embed_dim=16", "train.batch_size=16", "train.lr=1e-2", "resources.workers=1"]


def tiny(*overrides: str) -> ToyConfig:
    return load_config(ToyConfig, None, TINY + list(overrides))


def test_pooling_by_hand():
    x = torch.tensor([[[1.0, 10.0], [3.0, 30.0], [5.0, 50.0]], [[2.0, 0.0], [9.0, 9.0], [9.0, 9.0]]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert masked_mean(x, mask).tolist() == [[2.0, 20.0], [2.0, 0.0]]
    assert last_position(x, mask).tolist() == [[3.0, 30.0], [2.0, 0.0]]


def test_logits_shape_and_padding_ignored():
    model = ToyRec(num_items=9, cfg=ToyModelConfig(embed_dim=4, pooling="mean", dropout=0.0))
    ids = torch.tensor([[3, 4, 0, 0], [5, 0, 0, 0]])
    logits = model(ids, ids != 0)
    assert logits.shape == (2, 10)
    # Changing the embedding of the padding id changes nothing.
    with torch.no_grad():
        model.embed.weight[0] += 100.0
    assert torch.equal(model(ids, ids != 0), logits)


def test_most_popular_by_hand():
    split = leave_one_out([[1, 1, 2], [1, 2, 3], [2, 3, 3, 1, 3]], max_len=4)["test"]  # targets 2, 3, 3
    counts = np.array([0, 5, 3, 1])
    got = most_popular(counts, split, ks=[1, 2, 3])
    # ranks: item 2 -> 1, item 3 -> 2 (twice)
    assert got["hr@1"] == 0 and got["hr@2"] == pytest.approx(1 / 3) and got["hr@3"] == 1
    assert got["ndcg@3"] == pytest.approx((1 / math.log2(3) + 2 / math.log2(4)) / 3)


def test_epoch_order_shards_evenly():
    parts = [epoch_order(11, seed=0, epoch=2, rank=r, world_size=2) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 5
    assert not set(parts[0].tolist()) & set(parts[1].tolist())
    assert torch.equal(parts[0], epoch_order(11, seed=0, epoch=2, rank=0, world_size=2))
    assert not torch.equal(parts[0], epoch_order(11, seed=0, epoch=3, rank=0, world_size=2))


def test_grad_accumulation_matches_one_big_batch(tmp_path):
    big = tiny("model.dropout=0", "train.grad_clip=0", "train.epochs=1", "train.batch_size=16")
    small = tiny("model.dropout=0", "train.grad_clip=0", "train.epochs=1", "train.batch_size=8", "train.grad_accum=2")
    seqs = load_sequences(big.data, big.seed)
    fit_local(big, seqs, tmp_path / "big")
    fit_local(small, seqs, tmp_path / "small")
    a, b = load_state(tmp_path / "big" / "checkpoint_000001"), load_state(tmp_path / "small" / "checkpoint_000001")
    assert a["step"] == b["step"] > 1
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-5, atol=1e-6)


def test_loss_falls_and_every_parameter_changes(tmp_path):
    cfg = tiny("train.epochs=4")
    seqs = load_sequences(cfg.data, cfg.seed)
    torch.manual_seed(cfg.seed)
    initial = ToyRec(cfg.data.num_items, cfg.model).state_dict()
    session = LocalSession(tmp_path, keep=1)
    final = fit(cfg, seqs, session)
    losses = [r["train_loss"] for r in session.reports]
    assert losses[-1] < 0.8 * losses[0]
    assert final["test_hr@10"] > final["popular_hr@10"]
    trained = load_state(session.checkpoints()[-1])["model"]
    assert len(session.checkpoints()) == 1  # older checkpoints pruned
    for key, value in initial.items():
        assert not torch.equal(value, trained[key]), f"{key} did not change"


def test_resume_continues_exactly(tmp_path):
    cfg = tiny("train.epochs=3", "model.dropout=0.3")
    seqs = load_sequences(cfg.data, cfg.seed)
    straight = fit_local(cfg, seqs, tmp_path / "straight")
    fit_local(tiny("train.epochs=1", "model.dropout=0.3"), seqs, tmp_path / "resumed")  # "interrupted" after 1
    resumed = fit_local(cfg, seqs, tmp_path / "resumed")
    assert resumed["resumed_from_epoch"] == 1 and straight["resumed_from_epoch"] == 0
    a = load_state(tmp_path / "straight" / "checkpoint_000003")
    b = load_state(tmp_path / "resumed" / "checkpoint_000003")
    assert a["step"] == b["step"] and a["epoch"] == b["epoch"] == 3
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])
    for key in ("train_loss", "ndcg@10", "test_hr@10"):
        assert straight[key] == resumed[key]
