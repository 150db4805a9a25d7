"""The stage frame: one registry, one freshness rule for every entry point.

For every stage of the registry: a finished record is up to date for the same config and inputs,
whether the run folder is named absolutely or relatively; a change of a field that affects the result
makes it stale, one declared ``affects_result=False`` does not; a rerun of any upstream stage (a new
upstream ``stage.json``) makes it stale. Then a real standalone command (``ray-rec sid build``) skips
and reruns by that rule.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from tiny_runs import write_tiny_run

from ray_rec import stages
from ray_rec.cli import build_parser, main
from ray_rec.io import write_json, write_parquet
from ray_rec.paths import RunPaths
from ray_rec.pipeline.config import PipelineConfig
from ray_rec.schema import EMBEDDINGS
from ray_rec.stage import STAGE_FILE, fingerprint, result_fields

# stage -> (a field whose change changes the result, a field declared not to)
CHANGES = {
    "data": ("max_history", "num_cpus"),
    "embed": ("max_length", "resources.workers"),
    "sid": ("seed", "resources.threads_per_worker"),
    "sft": ("train.lr", "resources.workers"),
    "evaluate": ("num_beams", "resources.use_gpu"),
    "rl": ("grpo.beta", "resources.threads_per_worker"),
    "sasrec": ("hidden", "resources.workers"),
    "toy_train": ("seed", "resources.cpus_per_worker"),
    "toy_tune": ("seed", "name"),
}
RESULT_VALUES = {"max_history": 7, "max_length": 64, "seed": 5, "train.lr": 2e-3, "num_beams": 60,
                 "grpo.beta": 0.1, "hidden": 32}
RUNTIME_VALUES = {"num_cpus": 3, "resources.workers": 4, "resources.threads_per_worker": 2, "resources.use_gpu": True,
                  "resources.cpus_per_worker": 0.5, "name": "other"}


def changed(cfg, dotted: str, value):
    """``cfg`` with the (possibly nested) field ``dotted`` set to ``value``."""
    head, _, rest = dotted.partition(".")
    if rest:
        return dataclasses.replace(cfg, **{head: changed(getattr(cfg, head), rest, value)})
    return dataclasses.replace(cfg, **{head: value})


def finished_upstream(paths: RunPaths) -> None:
    """Stage records of every upstream stage a default config reads, as if each had run."""
    for folder in (paths.data_dir, paths.embeddings.parent, paths.sid_dir("rqkmeans_constrained"),
                   paths.sft_dir("sft"), paths.sasrec_dir):
        write_json({"record_id": "first"}, folder / STAGE_FILE)
    write_json({"sid_method": "rqkmeans_constrained"}, paths.sft_model("sft") / "ray_rec_sft.json")


def rerun(folder: Path) -> None:
    """What an upstream stage that really reran leaves behind: a new record."""
    write_json({"record_id": "second"}, folder / STAGE_FILE)


def test_registry_is_the_one_list_of_stages():
    assert list(PipelineConfig.__dataclass_fields__)[4:] == list(stages.PIPELINE_STAGES)
    commands = build_parser()._subparsers._group_actions[0].choices
    for record in stages.STAGES.values():
        group = record.command.split()[0]
        assert group in commands, record.command
        assert record.config_class().__name__ and callable(record.entry())
    assert set(CHANGES) == set(stages.STAGES)


@pytest.mark.parametrize("name", list(stages.STAGES))
def test_freshness_rule_for_every_stage(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = RunPaths(tmp_path / "run")
    finished_upstream(paths)
    record = stages.get(name)
    cfg = record.config_class()(run=str(paths.root))
    assert not stages.up_to_date(name, cfg)  # never ran
    stages.finish(name, cfg, time.time())
    assert stages.up_to_date(name, cfg)
    assert stages.up_to_date(name, dataclasses.replace(cfg, run="run"))  # the same folder, named relatively

    result_field, runtime_field = CHANGES[name]
    assert not stages.up_to_date(name, changed(cfg, result_field, RESULT_VALUES[result_field]))
    assert stages.up_to_date(name, changed(cfg, runtime_field, RUNTIME_VALUES[runtime_field]))

    ups = record.upstream(cfg)
    if ups:
        folders = {"data": paths.data_dir, "embed": paths.embeddings.parent,
                   "sid": paths.sid_dir("rqkmeans_constrained"), "sft": paths.sft_dir("sft"),
                   "sasrec": paths.sasrec_dir}
        rerun(folders[ups[-1]])
        assert not stages.up_to_date(name, cfg), f"{name} did not notice {ups[-1]} rerunning"
        assert stages.inputs_changed(name, cfg)
        stages.finish(name, cfg, time.time())
        assert stages.up_to_date(name, cfg) and not stages.inputs_changed(name, cfg)

    # a rerun starts by dropping the record, so a crash half-way leaves nothing that vouches for new files
    stages.begin(name, cfg)
    assert not stages.up_to_date(name, cfg) and not (record.out_dir(cfg) / STAGE_FILE).exists()


def test_result_fields_leave_out_runtime_fields_and_the_run_folder(tmp_path):
    from ray_rec.eval.config import EvalConfig

    cfg = EvalConfig(run=str(tmp_path), checkpoint=str(tmp_path / "sft" / "a" / "model"))
    fields = result_fields(cfg)
    assert "run" not in fields and "resources" not in fields
    assert fields["checkpoint"] == "<run>/sft/a/model" and fields["num_beams"] == 50
    # a model outside the run folder is named as given
    outside = dataclasses.replace(cfg, checkpoint="/models/qwen")
    assert result_fields(outside)["checkpoint"] == "/models/qwen"
    assert fingerprint(cfg) != fingerprint(outside)


def test_external_inputs_are_hashed_by_content(tmp_path):
    from ray_rec.stage import input_hash

    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    before = input_hash(folder)
    (folder / "sub" / "weights.bin").write_bytes(b"1234")
    assert input_hash(folder) != before
    assert input_hash(tmp_path / "nothing") == "missing"


def _embeddings(paths: RunPaths, seed: int) -> None:
    """Random item vectors in <run>/embeddings, recorded as a finished embed stage."""
    from ray_rec.data.config import EmbedConfig

    n = 48
    vectors = np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)
    emb = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), 8).cast(pa.list_(pa.float32()))
    write_parquet(pa.table({"item_id": np.arange(n), "embedding": emb}), paths.embeddings, EMBEDDINGS)
    stages.finish("embed", EmbedConfig(run=str(paths.root)), time.time())


@pytest.mark.ray
def test_standalone_command_skips_then_reruns_after_an_upstream_rerun(ray_start_2_cpus, tmp_path):
    paths = write_tiny_run(tmp_path / "run")
    _embeddings(paths, seed=0)
    args = ["sid", "build", "--run", str(paths.root), "--method", "rqkmeans", "--codebook-size", "4",
            "--set", "kmeans_iters=5"]
    record = paths.sid_dir("rqkmeans") / STAGE_FILE

    assert main(args) == 0
    first = json.loads(record.read_text())
    assert main(args) == 0  # nothing changed: skipped, the record is the same one
    assert json.loads(record.read_text())["record_id"] == first["record_id"]

    _embeddings(paths, seed=1)  # the embed stage reran (other vectors)
    assert main(args) == 0
    second = json.loads(record.read_text())
    assert second["record_id"] != first["record_id"]
    assert second["inputs"][str(paths.embeddings)] != first["inputs"][str(paths.embeddings)]
