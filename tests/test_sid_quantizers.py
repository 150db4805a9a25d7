"""Quantizer math on hand-made embeddings whose right codes are known; collisions; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ray_rec.config import ConfigError, load_config
from ray_rec.errors import InputError
from ray_rec.sid.collisions import add_dedup_level, balance_last_level, colliding, distinct_codes, sinkhorn
from ray_rec.sid.config import SIDConfig
from ray_rec.sid.constrained import fit_constrained, size_bounds
from ray_rec.sid.quantize import ResidualCodebooks, check_embeddings, nearest
from ray_rec.sid.report import collision_stats, entropy_bits, level_usage, sid_report
from ray_rec.sid.rqkmeans import fit_rqkmeans
from ray_rec.sid.rqkmeans_plus import ResidualMLP, fit_rqkmeans_plus
from ray_rec.sid.rqvae import fit_rqvae


def two_level_data(replicas: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """4 coarse centres (+-10, +-10) times 4 fine offsets (+-1 on one axis): (80, 2) and true codes (80, 2)."""
    rng = np.random.default_rng(seed)
    coarse = np.array([[10, 10], [10, -10], [-10, 10], [-10, -10]], np.float32)
    fine = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]], np.float32)
    truth = np.array([(a, b) for a in range(4) for b in range(4) for _ in range(replicas)])
    x = coarse[truth[:, 0]] + fine[truth[:, 1]] + rng.normal(0, 0.01, (len(truth), 2)).astype(np.float32)
    return x, truth


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Codes equal up to renaming: a one-to-one map between the labels of a and b."""
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_rqkmeans_recovers_known_codes():
    x, truth = two_level_data()
    q = fit_rqkmeans(x, sizes=[4, 4], seed=0)
    codes = q.encode(x)
    assert codes.shape == (80, 2) and codes.dtype == np.int64
    assert same_partition(codes[:, 0], truth[:, 0])
    assert same_partition(codes[:, 1], truth[:, 1])
    # each (coarse, fine) pair reconstructs to within the noise
    assert np.abs(q.decode(codes) - x).max() < 0.1


def test_constrained_recovers_known_codes_with_equal_clusters():
    x, truth = two_level_data()
    q, codes = fit_constrained(x, sizes=[4, 4], seed=0, slack=0.0)
    assert same_partition(codes[:, 0], truth[:, 0])
    assert same_partition(codes[:, 1], truth[:, 1])
    assert (np.bincount(codes[:, 0]) == 20).all()
    assert (q.encode(x) == codes).all()  # separable data: nearest codes agree with the balanced ones


def test_constrained_balances_where_plain_kmeans_does_not():
    # 90 points in one tight blob and 10 far away: plain k-means gives the far 10 their own code.
    rng = np.random.default_rng(1)
    x = np.vstack([rng.normal(0, 1, (90, 4)), rng.normal(50, 1, (10, 4))]).astype(np.float32)
    plain = fit_rqkmeans(x, [4], seed=0).encode(x)[:, 0]
    _, balanced = fit_constrained(x, [4], seed=0, slack=0.2)
    lo, hi = size_bounds(100, 4, 0.2)
    assert np.bincount(balanced[:, 0], minlength=4).min() >= lo and np.bincount(balanced[:, 0]).max() <= hi
    assert entropy_bits(np.bincount(balanced[:, 0])) > entropy_bits(np.bincount(plain))


def test_same_seed_same_codes_other_seed_other_codebooks():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    a, b = fit_rqkmeans(x, [8, 8], seed=3), fit_rqkmeans(x, [8, 8], seed=3)
    assert all(np.array_equal(u, v) for u, v in zip(a.codebooks, b.codebooks, strict=True))
    assert not np.array_equal(a.codebooks[0], fit_rqkmeans(x, [8, 8], seed=4).codebooks[0])
    v1 = fit_rqvae(x, [8, 8], [16], 4, seed=1, epochs=3, batch_size=64, kmeans_iters=5)
    v2 = fit_rqvae(x, [8, 8], [16], 4, seed=1, epochs=3, batch_size=64, kmeans_iters=5)
    assert np.array_equal(v1.encode(x), v2.encode(x)) and v1.history == v2.history


def test_rqvae_trains_and_every_parameter_moves():
    x, _ = two_level_data(replicas=8)
    torch.manual_seed(0)
    q = fit_rqvae(x, [4, 4], hidden_dims=[16], latent_dim=4, seed=0, epochs=40, batch_size=32, lr=3e-3,
                  kmeans_iters=10, dead_code_every=5)
    assert q.history[-1] < q.history[0]
    from ray_rec.sid.rqvae import kmeans_codebooks, mlp
    torch.manual_seed(0)  # fit_rqvae builds the encoder, then the decoder, right after seeding
    fresh = [*mlp([2, 16, 4]).parameters(), *mlp([4, 16, 2]).parameters()]
    trained = [*q.model.encoder.parameters(), *q.model.decoder.parameters()]
    assert all(not torch.equal(a, b) for a, b in zip(fresh, trained, strict=True))
    codes = q.encode(x)
    assert codes.shape == (128, 2) and codes.min() >= 0 and codes.max() < 4
    assert q.decode(codes).shape == x.shape and q.last_level_cost(x, codes).shape == (128, 4)
    assert kmeans_codebooks(x, [4], 0, 5)[0].shape == (4, 2)


def test_rqkmeans_plus_starts_as_constrained_rqkmeans():
    block = ResidualMLP(6, 8)
    z = torch.randn(5, 6)
    assert torch.equal(block(z), z)  # zero-initialised last layer: the identity
    x, truth = two_level_data()
    q = fit_rqkmeans_plus(x, [4, 4], hidden_dim=8, seed=0, slack=0.0, epochs=1, batch_size=40, lr=1e-5)
    codes = q.encode(x)
    assert same_partition(codes[:, 0], truth[:, 0]) and same_partition(codes[:, 1], truth[:, 1])


def test_sinkhorn_meets_both_marginals():
    rng = np.random.default_rng(0)
    cost = rng.random((5, 7))
    rows, cols = np.full(5, 7 / 5), np.ones(7)
    plan = sinkhorn(cost, rows, cols, epsilon=0.1, iters=500)
    np.testing.assert_allclose(plan.sum(1), rows, atol=1e-6)
    np.testing.assert_allclose(plan.sum(0), cols, atol=1e-6)


def test_distinct_codes_finds_the_cheap_assignment():
    # item 0 prefers code 2, item 1 prefers 2 too but code 0 is almost as cheap, item 2 wants code 1.
    cost = np.array([[5.0, 5.0, 0.0, 5.0], [0.2, 5.0, 0.1, 5.0], [5.0, 0.0, 5.0, 5.0]])
    assert distinct_codes(cost, epsilon=0.05, iters=200).tolist() == [2, 0, 1]


def test_distinct_codes_with_more_items_than_codes_leaves_the_worst_out():
    cost = np.array([[0.0, 9.0], [9.0, 0.0], [1.0, 1.0]])
    assert distinct_codes(cost, epsilon=0.05, iters=200).tolist() == [0, 1, -1]


def test_balance_last_level_breaks_collisions_and_keeps_unique_items():
    codes = np.array([[0, 1], [0, 1], [0, 1], [0, 2], [1, 1]])
    cost = np.tile(np.array([3.0, 0.0, 1.0, 2.0]), (5, 1))  # everyone prefers code 1, then 2, 3, 0
    out = balance_last_level(codes, lambda rows: cost[rows], epsilon=0.05, iters=200)
    assert not colliding(out).any()
    assert (out[:, 0] == codes[:, 0]).all()           # prefixes never change
    assert out[3].tolist() == [0, 2] and out[4].tolist() == [1, 1]  # unique SIDs are kept
    assert sorted(out[:3, 1].tolist()) == [0, 1, 3]    # the free codes of prefix 0


def test_dedup_level_numbers_collision_groups():
    codes = np.array([[5, 5], [1, 2], [5, 5], [5, 5], [3, 3]])
    out = add_dedup_level(codes)
    assert out[:, 2].tolist() == [0, -1, 1, 2, -1]
    assert collision_stats(out)["collision_rate"] == 0.0
    assert add_dedup_level(np.array([[1], [2]])).shape == (2, 1)  # nothing collides: unchanged


def test_report_numbers_by_hand():
    codes = np.array([[0, 0, -1], [0, 1, -1], [1, 1, 0], [1, 1, 1]])
    r = sid_report(codes, sizes=[2, 4])
    assert r["collisions"] == {"items": 4, "distinct_sids": 4, "collision_rate": 0.0, "colliding_items": 0,
                               "max_items_per_sid": 1}
    assert r["base_collisions"]["collision_rate"] == 0.25 and r["base_collisions"]["max_items_per_sid"] == 2
    lv = level_usage(codes, [2, 4])
    assert lv[0]["entropy_bits"] == 1.0 and lv[0]["usage"] == 1.0
    assert lv[1]["codes_used"] == 2 and lv[1]["usage"] == 0.5
    assert abs(lv[1]["entropy_bits"] - 0.8112781) < 1e-6   # p = (1/4, 3/4)
    assert lv[2]["dedup"] and lv[2]["items"] == 2 and r["dedup_items"] == 2


@pytest.mark.parametrize("x, match", [
    (np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 4.0]]), "NaN or infinite"),
    (np.array([[0.0, np.inf], [1.0, 2.0], [3.0, 4.0]]), "NaN or infinite"),
    (np.zeros((2, 3)), "2 items but a codebook has 4 codes"),
    (np.zeros(5), "expected an"),
])
def test_bad_embeddings_are_refused(x, match):
    with pytest.raises(InputError, match=match):
        fit_rqkmeans(x, [4, 4])


def test_wrong_dimension_is_refused():
    q = ResidualCodebooks([np.eye(3, dtype=np.float32)])
    with pytest.raises(InputError, match="dimension 2 but the quantizer was fitted on dimension 3"):
        q.encode(np.zeros((4, 2)))
    assert nearest(check_embeddings(np.eye(3)), q.codebooks[0]).tolist() == [0, 1, 2]


def test_config_rules():
    assert SIDConfig(codebook_size=[8, 16, 32]).sizes == [8, 16, 32]
    assert SIDConfig(method="rqvae").use_sinkhorn and not SIDConfig().use_sinkhorn
    with pytest.raises(ConfigError, match="lists 2 sizes but levels=3"):
        SIDConfig(codebook_size=[8, 8])
    with pytest.raises(ConfigError, match="valid keys"):
        load_config(SIDConfig, None, ["codebooks=3"])
    assert load_config(SIDConfig, None, ["codebook_size=[4,4,4]", "method=rqvae"]).sizes == [4, 4, 4]


@pytest.mark.parametrize("name", ["sid.yaml", "sid_smoke.yaml", "sid_rqvae.yaml"])
def test_shipped_configs_load(name):
    from pathlib import Path

    cfg = load_config(SIDConfig, Path(__file__).resolve().parents[1] / "jobs" / "configs" / name)
    assert cfg.levels == 3 and len(cfg.sizes) == 3
