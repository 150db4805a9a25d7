"""The toy model on real Ray: 2-worker TorchTrainer (learns, beats most-popular, resumes by name)
and a 2-trial Tune sweep that writes the best config."""

from __future__ import annotations

import json
import uuid

import pytest

from ray_rec.config import load_config
from ray_rec.toy.config import ToyConfig

pytestmark = pytest.mark.ray
SMOKE = "jobs/configs/toy_smoke.yaml"


def smoke(tmp_path, *overrides: str) -> ToyConfig:
    return load_config(ToyConfig, SMOKE, [f"run={tmp_path}", *overrides])


def test_torchtrainer_two_workers_learns_beats_popular_and_resumes(ray_start_2_cpus, tmp_path):
    from ray_rec.paths import RunPaths
    from ray_rec.toy.train import run_toy_train

    name = f"t-{uuid.uuid4().hex[:8]}"  # a repeated name would resume an older run
    first = run_toy_train(smoke(tmp_path, f"name={name}", "train.epochs=2", "resources.workers=2"))
    assert first["epoch"] == 2 and first["resumed_from_epoch"] == 0

    cfg = smoke(tmp_path, f"name={name}", "train.epochs=4", "resources.workers=2")
    final = run_toy_train(cfg)  # same name: continues from the epoch-2 checkpoint
    assert final["epoch"] == 4 and final["resumed_from_epoch"] == 2
    out = RunPaths(tmp_path).toy_train_dir(name)
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < 0.9 * history[0]["train_loss"]
    assert final["test_hr@10"] > final["popular_hr@10"] + 0.2
    assert final["hr@10"] >= final["hr@5"] and 0 < final["ndcg@10"] <= final["hr@10"]
    assert (out / "curves.png").stat().st_size > 0 and (out / "stage.json").is_file()
    assert run_toy_train(cfg) == final  # finished with this config: returned without training


def test_tune_two_trials_writes_best_config(ray_start_2_cpus, tmp_path):
    from ray_rec.paths import RunPaths
    from ray_rec.toy.tune import run_toy_tune

    sweep = f"s-{uuid.uuid4().hex[:8]}"
    cfg = smoke(tmp_path, f"tune.name={sweep}", "tune.num_samples=2", "train.epochs=2")
    summary = run_toy_tune(cfg)
    out = RunPaths(tmp_path).toy_tune_dir(sweep)
    assert summary["trials"] == 2 and summary["errors"] == 0
    best = load_config(ToyConfig, out / "best_config.yaml")  # a valid, complete toy config
    assert best.train.lr == pytest.approx(summary["best_config"]["lr"])
    assert best.model.embed_dim == summary["best_config"]["embed_dim"]
    assert best.model.pooling == summary["best_config"]["pooling"]
    rows = (out / "results.md").read_text().strip().splitlines()
    assert len(rows) == 2 + 2 and "ndcg@10" in rows[0]
    assert (out / "trials.png").stat().st_size > 0
    assert 0 < summary["best_metrics"]["ndcg@10"] <= 1
    assert run_toy_tune(cfg) == summary  # finished with this config: returned without a new sweep
