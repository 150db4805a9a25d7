"""SASRec baseline: array building by hand, causal masking, padding never ranked, bad configs refused,
and a real 2-worker Ray Train run that learns a synthetic "item i is followed by item i+1" pattern."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from ray_rec.baseline.config import SASRecConfig
from ray_rec.baseline.sasrec import SASRec, encode_histories
from ray_rec.baseline.train import pad_left, rank_targets, run_sasrec, training_arrays
from ray_rec.config import ConfigError, load_config
from ray_rec.io import write_parquet
from ray_rec.metrics import hr_ndcg, ranks_from_scores
from ray_rec.paths import RunPaths
from ray_rec.resources import Resources
from ray_rec.schema import ITEMS, SAMPLES


def test_pad_left_and_training_arrays_by_hand():
    lists = pa.array([[4, 5, 6], [], [7]], type=pa.list_(pa.int64()))
    assert pad_left(lists, 2).tolist() == [[6, 7], [0, 0], [0, 8]]
    assert pad_left(lists, 3, tail=np.array([1, 2, 3])).tolist() == [[6, 7, 2], [0, 0, 3], [0, 8, 4]]
    assert pad_left(lists.slice(2), 2).tolist() == [[0, 8]]

    users = np.array([0, 0, 1])
    history = pa.array([[1], [1, 2], [5]], type=pa.list_(pa.int64()))
    targets = np.array([2, 3, 6])
    inputs, labels = training_arrays(users, history, targets, max_len=3, objective="last")
    assert inputs.tolist() == [[0, 0, 2], [0, 2, 3], [0, 0, 6]]
    assert labels.tolist() == [[0, 0, 3], [0, 0, 4], [0, 0, 7]]
    # 'all': user 0's first sample (1 -> 2) is a prefix of the second (1, 2 -> 3) and is dropped.
    inputs, labels = training_arrays(users, history, targets, max_len=3, objective="all")
    assert inputs.tolist() == [[0, 2, 3], [0, 0, 6]]
    assert labels.tolist() == [[0, 3, 4], [0, 0, 7]]
    # capped histories (2 items): user 0's 1 2 3 4 5 6 is rebuilt and every target labelled once
    history = pa.array([[1], [1, 2], [2, 3], [3, 4], [4, 5]], type=pa.list_(pa.int64()))
    inputs, labels = training_arrays(np.zeros(5, dtype=int), history, np.array([2, 3, 4, 5, 6]), max_len=3,
                                     objective="all")
    assert inputs.tolist() == [[0, 2, 3], [4, 5, 6]]  # windows 1 2 3 | 3 4 5 6, shifted by +1
    assert labels.tolist() == [[0, 3, 4], [5, 6, 7]]


def test_causal_masking_later_items_do_not_change_earlier_outputs():
    torch.manual_seed(0)
    model = SASRec(num_items=20, max_len=6, hidden=16, blocks=2, heads=2, dropout=0.3).eval()
    seq = encode_histories([[3, 1, 4, 1, 5]], max_len=6)
    changed = seq.clone()
    changed[0, 4] = 10  # the 4th real item
    out, out_changed = model(seq), model(changed)
    assert torch.allclose(out[0, :4], out_changed[0, :4], atol=1e-6)
    assert not torch.allclose(out[0, 4:], out_changed[0, 4:], atol=1e-4)
    # left padding is invisible: more padding in front gives the same scores
    short = encode_histories([[3, 1, 4, 1, 5]], max_len=5)
    assert torch.allclose(model.score(seq), model.score(short), atol=1e-5)


def test_padding_never_ranked_even_with_the_top_score():
    torch.manual_seed(0)
    model = SASRec(num_items=12, max_len=4, hidden=8, blocks=1, heads=2, dropout=0.0).eval()
    inputs = encode_histories([[1, 2], [3], [4, 5, 6]], max_len=4).numpy()
    targets = np.array([0, 7, 11])
    with torch.no_grad():  # make the padding column beat every item
        last = model(torch.as_tensor(inputs))[:, -1]
        model.item_emb.weight[0] = 100.0 * last.mean(0) / last.mean(0).norm()
    scores = model.score(torch.as_tensor(inputs)).numpy()
    assert (scores[:, 0] >= scores[:, 1:].max(axis=1)).all()
    ranks = rank_targets(model, inputs, targets)
    by_hand = [(scores[i, 1:] >= scores[i, t + 1]).sum() - 1 for i, t in enumerate(targets)]
    assert ranks.tolist() == by_hand
    assert (ranks == ranks_from_scores(scores[:, 1:], targets)).all()


def test_bad_config_refused():
    with pytest.raises(ConfigError, match="must divide"):
        SASRecConfig(hidden=64, heads=3)
    with pytest.raises(ConfigError, match="dropout"):
        SASRecConfig(dropout=1.0)
    with pytest.raises(ConfigError, match="include 10"):
        SASRecConfig(ks=[1, 5])
    with pytest.raises(ConfigError, match="valid keys"):
        load_config(SASRecConfig, None, ["hiden=32"])
    with pytest.raises(ConfigError, match="objective"):
        load_config(SASRecConfig, None, ["objective=every"])


def _synthetic_run(root, num_items: int = 30, num_users: int = 160, seed: int = 0) -> RunPaths:
    """Users walk the catalogue: item i is followed by item i+1 (mod V); last item test,
    second-to-last valid, the rest sliding-window training samples."""
    rng = np.random.default_rng(seed)
    paths = RunPaths(root)
    rows = {"train": [], "valid": [], "test": []}
    for user in range(num_users):
        start, length = rng.integers(num_items), rng.integers(5, 9)
        seq = [(start + k) % num_items for k in range(length)]
        for t in range(1, length):
            split = "test" if t == length - 1 else "valid" if t == length - 2 else "train"
            rows[split].append({"user_id": user, "history": seq[:t], "target": seq[t]})
    for split, data in rows.items():
        write_parquet(pa.Table.from_pylist(data, schema=SAMPLES), paths.samples(split), SAMPLES)
    items = pa.Table.from_pylist([{"item_id": i, "title": f"item {i}", "text": f"item {i}"}
                                  for i in range(num_items)], schema=ITEMS)
    write_parquet(items, paths.items, ITEMS)
    return paths


def test_sasrec_trains_on_two_ray_workers_and_beats_most_popular(tmp_path, ray_start_2_cpus):
    paths = _synthetic_run(tmp_path / "run")
    cfg = SASRecConfig(run=str(paths.root), hidden=16, heads=2, blocks=2, dropout=0.1, max_len=8,
                       lr=5e-3, batch_size=32, max_epochs=25, patience=5, resources=Resources(workers=2, cpus_per_worker=1.0),
                       ks=[1, 10])
    metrics = run_sasrec(cfg)

    losses = [row["loss"] for row in metrics["history"]]
    assert losses[-1] < 0.5 * losses[0]
    train = pq.read_table(paths.samples("train"))
    test = pq.read_table(paths.samples("test"))
    popularity = np.bincount(train.column("target").to_numpy(), minlength=30).astype(float)
    popular = hr_ndcg(ranks_from_scores(np.tile(popularity, (test.num_rows, 1)),
                                        test.column("target").to_numpy()), ks=[10])
    assert metrics["test"]["hr@10"] > popular["hr@10"] + 0.3
    assert metrics["test"]["hr@1"] > 0.5

    out = paths.sasrec_dir
    assert json.loads((out / "metrics.json").read_text())["test"] == metrics["test"]
    assert (out / "metrics.md").read_text().count("SASRec") >= 2
    assert (out / "curve.png").stat().st_size > 0
    # the installed model is the one that was scored
    model = SASRec.load(out / "model")
    inputs = pad_left(test.column("history").combine_chunks(), cfg.max_len)
    again = hr_ndcg(rank_targets(model, inputs, test.column("target").to_numpy()), ks=[1, 10])
    assert again == pytest.approx(metrics["test"])
    # the trained item embeddings are exported for collaborative SIDs, one row per item
    from ray_rec.sid.build import load_embeddings, run_sid_build
    from ray_rec.sid.config import SIDConfig

    ids, vectors = load_embeddings(out / "item_embeddings.parquet", paths.items)
    assert ids.tolist() == list(range(30))
    np.testing.assert_allclose(vectors, model.item_emb.weight.detach().numpy()[1:], rtol=1e-6)
    codes = run_sid_build(SIDConfig(run=str(paths.root), method="rqkmeans", name="cf", levels=2, codebook_size=4,
                                    embeddings=str(out / "item_embeddings.parquet")))
    assert pq.read_table(codes).num_rows == 30
    # same config again: skipped, same results
    assert run_sasrec(cfg)["test"] == metrics["test"]


def test_cli_reports_bad_config_in_one_line(capsys, tmp_path):
    from ray_rec.cli import main

    assert main(["baseline", "sasrec", "--run", str(tmp_path), "--set", "heads=3"]) == 2
    err = capsys.readouterr().err
    assert "must divide" in err and err.count("\n") == 1
    # a run folder without data is refused before Ray starts, naming the missing file
    assert main(["baseline", "sasrec", "--run", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "samples_train.parquet does not exist" in err and "ray-rec data prepare" in err
