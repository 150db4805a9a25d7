"""The synthetic default catalog: seeded, sized by config, text and histories that carry signal;
the ``ray-rec data`` commands on it (prepare, stats with its PNG)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ray_rec.cli import main
from ray_rec.config import ConfigError, load_config
from ray_rec.data.config import DataConfig, SyntheticConfig
from ray_rec.data.samples import build_splits, interactions_table, user_sequences, windows
from ray_rec.data.synthetic import generate_synthetic


@pytest.fixture(scope="module")
def shop():
    return generate_synthetic(SyntheticConfig(n_items=600, n_users=800, seed=3))


def test_seeded_and_sized(shop):
    again = generate_synthetic(SyntheticConfig(n_items=600, n_users=800, seed=3))
    assert again.items.equals(shop.items) and again.interactions.equals(shop.interactions)
    other = generate_synthetic(SyntheticConfig(n_items=600, n_users=800, seed=4))
    assert not other.interactions.equals(shop.interactions)
    assert len(shop.items) == 600 and shop.items.column("item_id").to_pylist() == list(range(600))
    assert len(set(shop.interactions.column("user_id").to_pylist())) == 800
    assert len(generate_synthetic(SyntheticConfig(n_items=100, n_users=10)).items) == 100
    for bad in (99, 1_000_001):
        with pytest.raises(ConfigError, match="between 100 and 1,000,000"):
            SyntheticConfig(n_items=bad)


def test_text_carries_the_product_kind(shop):
    items = shop.items.to_pylist()
    assert all(i["title"] and i["brand"] and len(i["categories"]) == 2 and i["description"] for i in items)
    assert all(i["title"].startswith(i["brand"]) for i in items)
    # items of one subcategory share description words naming it
    for item in items[:50]:
        assert item["categories"][1].lower() in item["description"]


def test_histories_carry_next_item_signal(shop):
    sub = np.array([i["categories"][1] for i in shop.items.to_pylist()])
    items = shop.interactions.column("item_id").to_numpy()
    users = shop.interactions.column("user_id").to_numpy()
    same_user = users[1:] == users[:-1]
    same_sub = (sub[items[1:]] == sub[items[:-1]])[same_user].mean()
    # complements and repeats stay in the subcategory; at random (30 subcategories) this is ~0.03
    assert same_sub > 0.45
    # items are not uniformly popular: the top 10% of items take a large share of interactions
    counts = np.sort(np.bincount(items, minlength=600))[::-1]
    assert counts[:60].sum() / counts.sum() > 0.2


def test_splits_are_consistent(shop):
    splits = shop.samples
    n = len(shop.interactions) - len(set(shop.interactions.column("user_id").to_pylist()))
    assert sum(len(t) for t in splits.values()) == n
    assert len(splits["valid"]) == int(n * 0.9) - int(n * 0.8)
    loo = build_splits(shop.interactions, 10, "leave_one_out")
    assert len(loo["test"]) == len(loo["valid"]) == 800
    assert max(len(h) for h in splits["train"].column("history").to_pylist()) == 10


def test_sliding_windows_by_hand():
    inter = interactions_table([0, 0, 0, 1, 1], [5, 6, 7, 8, 9], [3, 1, 2, 9, 9])
    s = build_splits(inter, 1, "leave_one_out")
    # user 0 sorted by time: 6 @1, 7 @2, 5 @3 ; user 1: 8, 9 (tie keeps input order)
    assert s["train"].to_pylist() == []
    assert s["valid"].to_pylist() == [{"user_id": 0, "history": [6], "target": 7}]
    assert s["test"].to_pylist() == [{"user_id": 0, "history": [7], "target": 5},
                                     {"user_id": 1, "history": [8], "target": 9}]


def test_user_sequences_chain_sliding_windows():
    # user 1: growing prefixes then windows of 3 items sliding by one; user 2: a single sample
    hist = [[10], [10, 11], [10, 11, 12], [11, 12, 13], [12, 13, 14], [7]]
    target = [11, 12, 13, 14, 15, 8]
    assert user_sequences([1, 1, 1, 1, 1, 2], hist, target) == [[10, 11, 12, 13, 14, 15], [7, 8]]
    assert windows([1, 2, 3, 4, 5, 6], 3) == [[1, 2], [2, 3, 4], [4, 5, 6]]
    assert windows([1, 2], 50) == [[1, 2]]
    assert windows([1], 3) == [[1]]


def test_capped_samples_give_every_target_once():
    """Histories capped at 4 items: rebuilding and windowing labels each target exactly once, the
    newest in a full window (what SASRec and sid_seq train on)."""
    inter = interactions_table([0] * 12 + [1] * 3, list(range(100, 112)) + [7, 8, 9], list(range(15)))
    train = build_splits(inter, 4, "leave_one_out")["train"]
    seqs = user_sequences(train.column("user_id").to_pylist(), train.column("history").to_pylist(),
                          train.column("target").to_pylist())
    assert seqs == [list(range(100, 110))]  # user 1 has no training sample (3 items: valid and test)
    pieces = windows(seqs[0], 5)
    assert pieces == [[100, 101], [101, 102, 103, 104, 105], [105, 106, 107, 108, 109]]
    labelled = [x for w in pieces for x in w[1:]]
    assert labelled == train.column("target").to_pylist() == list(range(101, 110))


def test_cli_prepare_and_stats(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["data", "prepare", "--run", str(run), "--set", "synthetic.n_items=150", "--set", "synthetic.n_users=120"]
    assert main(args) == 0
    manifest = json.loads((run / "data/manifest.json").read_text())
    assert manifest["counts"]["items"] == 150 and manifest["config"]["synthetic"]["n_users"] == 120
    assert main(["data", "stats", "--run", str(run)]) == 0
    stats = json.loads((run / "data/stats.json").read_text())
    assert stats["users"] == 120 and 0 < stats["sparsity"] < 1
    assert (run / "data/stats.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["data", "prepare", "--set", "source=lcrec"]) == 2
    assert "set path=" in capsys.readouterr().err


def test_yaml_configs_load():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[1] / "jobs/configs").glob("data*.yaml"))
    assert configs
    for path in configs:
        load_config(DataConfig if "embed" not in path.name else __import__(
            "ray_rec.data.config", fromlist=["EmbedConfig"]).EmbedConfig, path)
