"""Evaluation: hand-computed metrics, identical results on 1 and 2 Ray actors, clear errors on bad input."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pyarrow as pa
import pytest
from tiny_lm import save_tiny_lm

from ray_rec.cli import main
from ray_rec.errors import InputError
from ray_rec.eval.config import EvalConfig
from ray_rec.eval.evaluate import PREDICTIONS, run_evaluate, score
from ray_rec.io import write_parquet
from ray_rec.lm.checkpoint import save_sft_model
from ray_rec.lm.model import build_model_and_tokenizer
from ray_rec.paths import RunPaths
from ray_rec.resources import Resources
from ray_rec.schema import CODES, SAMPLES
from ray_rec.train.config import ModelSection


def test_metrics_equal_hand_computed_values():
    # targets at rank 0, rank 2, missing, rank 4 (after a -1 slot that is no item)
    table = pa.table({
        "row": [0, 1, 2, 3], "user_id": [10, 11, 12, 13], "target": [5, 7, 9, 4],
        "items": [[5, 1, 2, 3, 0], [1, 2, 7, 3, 0], [1, 2, 3, 4, 5], [1, 2, 3, -1, 4]],
        "scores": [[-1.0] * 5] * 4, "invalid": [0, 0, 2, 1],
    }, schema=PREDICTIONS)
    m = score(table, [1, 3, 5])
    assert m["hr@1"] == pytest.approx(1 / 4)
    assert m["hr@3"] == pytest.approx(2 / 4)
    assert m["hr@5"] == pytest.approx(3 / 4)
    assert m["ndcg@1"] == pytest.approx(1 / 4)
    assert m["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / 4)
    assert m["ndcg@5"] == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(6)) / 4)
    assert m["cc"] == 3 and m["users"] == 4


def make_run(root, n_items: int = 40, n_users: int = 20, seed: int = 0) -> RunPaths:
    """A run folder with random 3-level SIDs, test samples and a tiny random model."""
    rng = np.random.default_rng(seed)
    paths = RunPaths(root)
    codes = np.unique(rng.integers(0, 8, size=(3 * n_items, 3)), axis=0)[:n_items]
    write_parquet(pa.table({"item_id": np.arange(n_items), "codes": codes.tolist()}), paths.codes("rqkmeans"), CODES)
    histories = [rng.integers(0, n_items, size=rng.integers(1, 6)).tolist() for _ in range(n_users)]
    write_parquet(pa.table({"user_id": np.arange(n_users), "history": histories,
                            "target": rng.integers(0, n_items, size=n_users)}), paths.samples("test"), SAMPLES)
    # the SFT stage's own model builder and checkpoint format (BPE tokenizer, SID tokens, ray_rec_sft.json)
    titles = pa.table({"title": [f"item {i} widget" for i in range(n_items)]})
    section = ModelSection(hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=2, bpe_vocab_size=300)
    model, tok = build_model_and_tokenizer(section, titles, [8, 8, 8], seed=seed)
    save_sft_model(model, tok, paths.sft_model(), meta={"sid_method": "rqkmeans"})
    return paths


def test_one_and_two_actors_give_identical_metrics(tmp_path, ray_start_2_cpus, capsys):
    paths = make_run(tmp_path / "run")
    base = dict(run=str(paths.root), num_beams=10, top_k=10, ks=[1, 3, 5, 10], batch_size=4)
    one = run_evaluate(EvalConfig(name="one", resources=Resources(workers=1), **base))
    two = run_evaluate(EvalConfig(name="two", resources=Resources(workers=2), **base))
    keys = [f"{m}@{k}" for k in (1, 3, 5, 10) for m in ("hr", "ndcg")]
    assert {k: one[k] for k in keys} == {k: two[k] for k in keys}
    assert one["cc"] == two["cc"] == 0 and one["users"] == 20
    preds = [pa.parquet.read_table(paths.eval_dir(n, "test") / "predictions.parquet") for n in ("one", "two")]
    assert preds[0].equals(preds[1])
    items = np.array(preds[0].column("items").to_pylist())
    assert items.shape == (20, 10) and items.min() >= 0 and items.max() < 40  # every slot a real item
    assert all(len(set(row)) == len(row) for row in items.tolist())
    saved = json.loads((paths.eval_dir("one", "test") / "metrics.json").read_text())
    assert saved["hr@10"] == one["hr@10"]
    assert "| one |" in (paths.eval_dir("one", "test") / "metrics.md").read_text()
    # a finished evaluation with the same config is not redone, whatever the actor count
    again = run_evaluate(EvalConfig(name="one", resources=Resources(workers=2), **base))
    assert again["hr@10"] == one["hr@10"] and again["seconds"] == one["seconds"]
    # the command line maps its flags onto the same config (so it finds that finished evaluation)
    assert main(["evaluate", "--run", str(paths.root), "--name", "one", "--split", "test", "--workers", "2",
                 "--set", "num_beams=10", "--set", "top_k=10",
                 "--set", "ks=[1,3,5,10]", "--set", "batch_size=4"]) == 0
    assert f"{one['hr@10']:.4f}" in capsys.readouterr().out


def test_bad_input_names_file_line_and_field(tmp_path):
    paths = make_run(tmp_path / "run", n_items=10, n_users=3)
    write_parquet(pa.table({"user_id": [0, 1], "history": [[1, 2], [3, 99]], "target": [4, 5]}),
                  paths.samples("test"), SAMPLES)
    with pytest.raises(InputError, match="sid_method"):  # a checkpoint that does not say its SIDs
        run_evaluate(EvalConfig(run=str(paths.root), checkpoint=str(save_tiny_lm(tmp_path / "bare", [8, 8, 8])),
                                num_beams=5, top_k=5, ks=[1, 5]))
    with pytest.raises(InputError, match=r"samples_test.parquet:2: field 'history': item 99 has no SID"):
        run_evaluate(EvalConfig(run=str(paths.root), sid_method="rqkmeans", num_beams=5, top_k=5, ks=[1, 5]))
    with pytest.raises(InputError, match="no Hugging Face model"):
        run_evaluate(EvalConfig(run=str(paths.root), checkpoint=str(tmp_path / "nowhere"), num_beams=5, top_k=5,
                                ks=[1, 5]))
    with pytest.raises(InputError, match="top_k"):
        EvalConfig(num_beams=5, top_k=10)


def test_a_retrained_checkpoint_makes_a_finished_evaluation_stale(tmp_path):
    import time

    from ray_rec import stages
    from ray_rec.io import write_json

    paths = make_run(tmp_path / "run", n_items=10, n_users=3)
    cfg = EvalConfig(run=str(paths.root), num_beams=5, top_k=5, ks=[1, 5])
    stages.finish("evaluate", cfg, time.time())
    assert stages.up_to_date("evaluate", cfg)
    # a model made outside any stage is known by its content
    (paths.sft_model() / "model.safetensors").write_bytes(b"other weights")
    assert not stages.up_to_date("evaluate", cfg)
    stages.finish("evaluate", cfg, time.time())
    assert stages.up_to_date("evaluate", cfg)
    # a model of the SFT stage by that stage's record: the stage reran
    write_json({"record_id": "retrained"}, paths.sft_dir() / "stage.json")
    assert not stages.up_to_date("evaluate", cfg)


def test_max_history_cuts_prompts_to_the_newest_items(tmp_path):
    from ray_rec.eval.evaluate import BeamSearchActor

    paths = make_run(tmp_path / "run", n_users=8)
    samples = pa.parquet.read_table(paths.samples("test"))
    batch = samples.append_column("row", pa.array(np.arange(samples.num_rows)))
    newest = batch.set_column(batch.schema.get_field_index("history"), "history",
                              pa.array([h[-1:] for h in batch.column("history").to_pylist()], pa.list_(pa.int64())))
    kwargs = dict(checkpoint=str(paths.sft_model()), codes_path=str(paths.codes("rqkmeans")), num_beams=6, top_k=6,
                  device="cpu", threads=1)
    whole = BeamSearchActor(**kwargs)  # the checkpoint records no cut: whole histories
    cut = BeamSearchActor(**kwargs, max_history=1)
    assert cut(batch).equals(whole(newest))
    longer = [len(h) > 1 for h in batch.column("history").to_pylist()]
    assert any(longer)
    # A cut history changes scores by ~1e-2; the same prompt padded into a longer batch moves them only by float
    # rounding (other matmul shapes), so compare with a tolerance between the two.
    differs = [not np.allclose(a, b, atol=1e-4) for a, b in
               zip(whole(batch).column("scores").to_pylist(), cut(batch).column("scores").to_pylist(), strict=True)]
    assert differs == longer


def test_a_checkpoint_trained_on_other_sids_is_refused(tmp_path):
    from ray_rec import artifacts
    from ray_rec.io import file_sha256
    from ray_rec.lm.checkpoint import check_trained_codes, write_meta
    from ray_rec.sid.index_io import codebook_sizes

    paths = make_run(tmp_path / "run", n_items=10, n_users=3)
    cfg = EvalConfig(run=str(paths.root), num_beams=5, top_k=5, ks=[1, 5])
    # another catalogue's vocabulary: 32 codes per level where this run has 8
    here = codebook_sizes(artifacts.read_codes(paths.codes("rqkmeans")))
    write_meta(paths.sft_model(), {"sid_method": "rqkmeans", "codebook_sizes": [32, 32, 32], "codes": "elsewhere"})
    with pytest.raises(InputError, match=rf"codebook sizes \[32, 32, 32\] \(elsewhere\), but .*codes.parquet has {re.escape(str(here))}"):
        run_evaluate(cfg)
    # the same vocabulary, but codes rebuilt since training
    write_meta(paths.sft_model(), {"sid_method": "rqkmeans", "codebook_sizes": here, "codes_sha256": "0" * 64})
    with pytest.raises(InputError, match="trained on other codes"):
        run_evaluate(cfg)
    # the very codes it was trained on pass
    write_meta(paths.sft_model(), {"sid_method": "rqkmeans", "codebook_sizes": here,
                                   "codes_sha256": file_sha256(paths.codes("rqkmeans"))})
    check_trained_codes(paths.sft_model(), artifacts.read_codes(paths.codes("rqkmeans")), paths.codes("rqkmeans"))
