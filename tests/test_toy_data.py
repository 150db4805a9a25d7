"""Toy data, config and CLI: generator, JSONL errors naming file and line, collation, splits, refusals."""

from __future__ import annotations

import json

import pytest
import torch

from ray_rec.cli import main
from ray_rec.config import ConfigError, load_config
from ray_rec.errors import InputError
from ray_rec.toy.config import ToyConfig, ToyDataConfig
from ray_rec.toy.data import collate, leave_one_out, make_toy_sequences, read_jsonl, train_item_counts, write_jsonl


def test_generator_is_seeded_and_in_range():
    cfg = ToyDataConfig(num_users=50, num_items=40, min_seq_len=4, max_seq_len=9)
    a, b = make_toy_sequences(cfg, seed=3), make_toy_sequences(cfg, seed=3)
    assert a == b and a != make_toy_sequences(cfg, seed=4)
    assert len(a) == 50 and all(4 <= len(s) <= 9 for s in a)
    assert min(min(s) for s in a) >= 1 and max(max(s) for s in a) <= 40


def test_jsonl_round_trip(tmp_path):
    seqs = [[1, 2, 3], [4, 5, 6, 7]]
    path = write_jsonl(seqs, tmp_path / "u.jsonl")
    assert json.loads(path.read_text().splitlines()[1]) == {"user_id": 1, "items": [4, 5, 6, 7]}
    assert read_jsonl(path, num_items=7) == seqs
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed away


@pytest.mark.parametrize("line, message", [
    ('{"items": [1, 2', "not valid JSON"),
    ('{"items": [1, 99, 2]}', "item id 99 outside 1..10"),
    ('{"items": [0, 1]}', "item id 0 outside 1..10"),
    ('{"items": []}', "empty sequence"),
    ('{"items": [1, "x"]}', "item 1 is 'x', not an integer id"),
    ('{"items": [1, 2.5]}', "not an integer id"),
    ('{"user_id": 3}', "missing key 'items'"),
])
def test_bad_jsonl_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"items": [1, 2, 3]}\n\n' + line + "\n")
    with pytest.raises(InputError) as err:
        read_jsonl(path, num_items=10)
    assert f"{path}:3:" in str(err.value) and message in str(err.value)


def test_collate_pads_right_keeps_last_items():
    ids, mask = collate([[5, 6, 7, 8], [3], []], max_len=3)
    assert ids.tolist() == [[6, 7, 8], [3, 0, 0], [0, 0, 0]]
    assert mask.tolist() == [[True] * 3, [True, False, False], [False] * 3]
    assert ids.dtype == torch.long and ids.shape == mask.shape == (3, 3)


def test_leave_one_out_splits_by_hand():
    splits = leave_one_out([[1, 2, 3, 4, 5], [6, 7]], max_len=3)
    train, valid, test = splits["train"], splits["valid"], splits["test"]
    # user 1: train targets 2, 3; valid 4; test 5 — user 2 (2 items): one train sample, no valid/test
    assert train.labels.tolist() == [2, 3, 7]
    assert train.input_ids.tolist() == [[1, 0, 0], [1, 2, 0], [6, 0, 0]]
    assert valid.labels.tolist() == [4] and valid.input_ids.tolist() == [[1, 2, 3]]
    assert test.labels.tolist() == [5] and test.input_ids.tolist() == [[2, 3, 4]]  # last 3 of 1..4
    assert train_item_counts([[1, 2, 3, 4, 5], [6, 7]], 7).tolist() == [0, 1, 1, 1, 0, 0, 1, 1]


def test_config_refuses_unknown_keys_and_bad_values():
    with pytest.raises(ConfigError, match="valid keys under train: epochs"):
        load_config(ToyConfig, None, ["train.epoch=3"])
    with pytest.raises(ConfigError, match="needs resources.use_gpu=true"):
        load_config(ToyConfig, None, ["train.amp=true"])
    with pytest.raises(ConfigError, match="needs data.train_path"):
        load_config(ToyConfig, None, ["data.dataset=jsonl"])
    with pytest.raises(ConfigError, match="not one of"):
        load_config(ToyConfig, None, ["model.pooling=max"])
    cfg = load_config(ToyConfig, "jobs/configs/toy_smoke.yaml", ["train.lr=3e-4"])
    assert cfg.train.lr == 3e-4


def test_shipped_configs_load():
    for name in ("toy", "toy_smoke"):
        cfg = load_config(ToyConfig, f"jobs/configs/{name}.yaml")
        assert cfg.data.dataset == "toy"


def test_cli_data_writes_jsonl(tmp_path, capsys):
    out = tmp_path / "toy.jsonl"
    assert main(["toy", "data", "--out", str(out), "--num-users", "7", "--num-items", "30",
                 "--max-len", "6", "--n", "10", "--seed", "1"]) == 0
    seqs = read_jsonl(out, num_items=30)
    assert len(seqs) == 10 and all(len(s) <= 6 for s in seqs)
    assert json.loads(out.read_text().splitlines()[8])["user_id"] == 1  # line 9 -> user 8 % 7


def test_cli_cuda_without_gpu_is_one_sentence(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    code = main(["toy", "train", "--use-gpu", "--run", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "no CUDA GPU" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_cli_bad_jsonl_fails_before_writing(tmp_path, capsys):
    bad = tmp_path / "users.jsonl"
    bad.write_text('{"items": [1, 2, 3]}\n{"items": [4, 5, 500]}\n')
    run = tmp_path / "run"
    code = main(["toy", "train", "--dataset", "jsonl", "--train-path", str(bad), "--run", str(run)])
    err = capsys.readouterr().err
    assert code == 2 and f"{bad}:2:" in err and "item id 500" in err
    assert not run.exists()


def test_cluster_yaml_is_valid_and_commented():
    import yaml
    from ray.autoscaler._private.util import prepare_config, validate_config

    text = open("cluster.yaml").read()
    cfg = yaml.safe_load(text)
    validate_config(prepare_config(cfg))  # Ray's own launcher schema
    assert set(cfg["available_node_types"]) == {"head", "gpu_a100", "gpu_h100"}
    keys = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith(("#", "-"))]
    uncommented = [line for line in keys if "#" not in line and not line.rstrip().endswith(":")]
    assert not uncommented, uncommented


def test_leave_one_out_cuts_histories_first_same_samples_linear_memory():
    import tracemalloc

    import numpy as np

    from ray_rec.toy.data import collate, leave_one_out

    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 50, size=n).tolist() for n in (3, 4, 9, 30)]
    splits = leave_one_out(seqs, max_len=5)
    # the same samples as building every whole prefix and cutting it at collate time
    train = [(s[:t], s[t]) for s in seqs for t in range(1, len(s) - 2)]
    ids, mask = collate([h for h, _ in train], 5)
    assert torch.equal(splits["train"].input_ids, ids) and torch.equal(splits["train"].mask, mask)
    assert splits["test"].labels.tolist() == [s[-1] for s in seqs]
    # one 5,000-item user: whole prefixes would hold ~12.5 M list slots (~100 MB); cut first, a few MB
    long = [rng.integers(1, 50, size=5000).tolist()]
    tracemalloc.start()
    leave_one_out(long, max_len=50)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20e6, f"peak {peak / 1e6:.0f} MB"
