"""The whole pipeline end to end on a tiny synthetic catalogue, on the session's local Ray."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml

from ray_rec.cli import main
from ray_rec.config import ConfigError, load_config, to_dict
from ray_rec.paths import RunPaths
from ray_rec.pipeline.config import PipelineConfig
from ray_rec.pipeline.run import random_ndcg, run_pipeline
from ray_rec.stages import STAGES

SMOKE = "jobs/configs/pipeline_smoke.yaml"


def test_random_ndcg_hand_computed():
    # n=4, K=2: (1/4) * (1/log2(2) + 1/log2(3))
    assert random_ndcg(2, 4) == pytest.approx((1 + 1 / 1.5849625007211562) / 4)


def test_config_refuses_mismatched_sid_method_and_unknown_stage():
    with pytest.raises(ConfigError, match="set sft.sid_method=rqvae"):
        load_config(PipelineConfig, SMOKE, ["sid.method=rqvae"])
    with pytest.raises(ConfigError, match="valid stages"):
        load_config(PipelineConfig, SMOKE, ["stages=[data, train]"])


def test_collaborative_sids_need_sasrec_first():
    with pytest.raises(ConfigError, match="list sasrec before sid"):
        load_config(PipelineConfig, SMOKE, ["sid_input=sasrec"])
    with pytest.raises(ConfigError, match="leave sid.embeddings empty"):
        load_config(PipelineConfig, SMOKE, ["sid_input=sasrec", "stages=[data, sasrec, sid]", "sid.embeddings=x.parquet"])


def test_distillation_needs_sasrec_before_sft():
    with pytest.raises(ConfigError, match="list sasrec before sft"):
        load_config(PipelineConfig, SMOKE, ["sft.distill.weight=0.5"])  # the default stages end with sasrec
    cfg = load_config(PipelineConfig, SMOKE, ["sft.distill.weight=0.5", "stages=[data, embed, sid, sasrec, sft]"])
    assert "sasrec" in cfg.upstream()["sft"]  # a retrained SASRec makes the SFT model stale
    assert "sasrec" not in load_config(PipelineConfig, SMOKE, []).upstream()["sft"]


def test_pipeline_quantizes_sasrec_embeddings(ray_start_2_cpus, tmp_path):
    """sid_input=sasrec: the SID stage reads the SASRec's exported item embeddings, and retraining
    SASRec makes the SIDs stale."""
    cfg = load_config(PipelineConfig, SMOKE, [f"run={tmp_path / 'run'}", "sid_input=sasrec",
                                              "stages=[data, sasrec, sid]", "sasrec.max_epochs=2"])
    paths = RunPaths(tmp_path / "run")
    run_pipeline(cfg)
    stage = json.loads((paths.sid_dir("rqkmeans_constrained") / "stage.json").read_text())
    assert stage["config"]["embeddings"] == str(paths.sasrec_embeddings)
    assert pq.read_table(paths.codes("rqkmeans_constrained")).num_rows == pq.read_metadata(paths.items).num_rows
    assert not paths.embeddings.exists()  # the text encoder never ran
    first = paths.codes("rqkmeans_constrained").stat().st_mtime
    run_pipeline(load_config(PipelineConfig, SMOKE, [f"run={tmp_path / 'run'}", "sid_input=sasrec",
                                                     "stages=[data, sasrec, sid]", "sasrec.max_epochs=2",
                                                     "sasrec.force=true"]))
    assert paths.codes("rqkmeans_constrained").stat().st_mtime > first  # rebuilt from the new embeddings


@pytest.mark.slow
def test_pipeline_end_to_end(smoke_pipeline, tmp_path, monkeypatch):
    paths, report, cfg = smoke_pipeline
    for path in (paths.items, paths.samples("test"), paths.embeddings, paths.codes("rqkmeans_constrained"),
                 paths.sft_model("sft-smoke") / "config.json", paths.report_dir / "metrics.png"):
        assert path.is_file(), path
    rows = report["test"]
    gen, rnd = rows["generative (SFT, constrained beam)"], rows["random"]
    # the generative model learned the catalogue's sequential habits: far above random ranking
    assert gen["hr@10"] > 3 * rnd["hr@10"], rows
    assert rows["SASRec"]["hr@10"] > 3 * rnd["hr@10"], rows
    metrics = json.loads((paths.eval_dir("sft-smoke", "test") / "metrics.json").read_text())
    assert metrics["cc"] == 0  # every generation is a real item
    # GRPO ran from the SFT model (DDP here) and its model was ranked the same way
    rl = rows["generative (SFT + GRPO, constrained beam)"]
    assert rl["hr@10"] > 3 * rnd["hr@10"], rows
    rl_metrics = json.loads((paths.eval_dir("sft-smoke-rl", "test") / "metrics.json").read_text())
    assert rl_metrics["cc"] == 0 and rl_metrics["checkpoint"] == str(paths.rl_model("grpo-smoke"))
    assert json.loads((paths.rl_dir("grpo-smoke") / "stage.json").read_text())["steps"] == 8
    n_test = pq.read_metadata(paths.samples("test")).num_rows
    assert metrics["users"] == min(200, n_test)

    # a rerun with nothing changed skips every stage
    again = run_pipeline(cfg)
    assert again["test"] == rows
    assert sum(again["stage_seconds"].values()) < 0.25 * sum(report["stage_seconds"].values())
    # ... and its report keeps the real time each stage took, not the skip's
    assert again["made_in_seconds"] == report["made_in_seconds"] and report["made_in_seconds"]["sft"] > 1
    assert json.dumps(report["made_in_seconds"]) in (paths.report_dir / "metrics.md").read_text()

    # and so does each stage's own command on the same section, with the run folder named relatively
    monkeypatch.chdir(paths.root.parent)
    for stage, section in cfg.bound().items():
        record = STAGES[stage].out_dir(section) / "stage.json"
        before = json.loads(record.read_text())["record_id"]
        config = tmp_path / f"{stage}.yaml"
        config.write_text(yaml.safe_dump({k: v for k, v in to_dict(section).items() if k != "run"}))
        assert main([*STAGES[stage].command.split(), "--config", str(config), "--run", "run"]) == 0, stage
        assert json.loads(record.read_text())["record_id"] == before, f"ray-rec {STAGES[stage].command} reran"
