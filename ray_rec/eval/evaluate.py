"""Distributed evaluation of a generative recommender: constrained beam search over Ray Data.

The split's samples go through ``map_batches`` with a pool of :class:`BeamSearchActor` actors, each
loading the checkpoint and building the SID trie once. Every generated SID is mapped back to item
ids, and the metrics are computed on item ids over the full catalogue:

* HR@K, NDCG@K for K in ``cfg.ks`` (``ray_rec.metrics``; a target not among the top ``top_k``
  generated items is a miss);
* CC, the number of finished beams that are not valid items (0 by construction of the trie).

Batches are fixed before Ray sees them (samples sorted by history length, cut into blocks of
``batch_size``), so the metrics do not depend on the number of actors. Outputs, in
``<run>/eval/<name>/<split>/``: ``metrics.json``, ``metrics.md``, ``predictions.parquet``
(row, user_id, target, ranked item ids and scores) and ``stage.json``.

Run: ``ray-rec evaluate --run runs/demo --split test`` (or ``run_evaluate(EvalConfig(...))``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ray_rec import artifacts, stages
from ray_rec.config import to_dict
from ray_rec.errors import InputError
from ray_rec.eval.config import EvalConfig
from ray_rec.io import write_json, write_parquet, write_text
from ray_rec.lm.checkpoint import check_trained_codes, trained_max_history
from ray_rec.lm.inputs import samples_with_sids
from ray_rec.metrics import format_table, hr_ndcg, ranks_from_lists
from ray_rec.paths import RunPaths
from ray_rec.sid.index_io import codes_by_item

# fields that change how the work is spread, not what is computed

PREDICTIONS = pa.schema([
    pa.field("row", pa.int64(), nullable=False),  # row of the sample in samples_<split>.parquet
    pa.field("user_id", pa.int64(), nullable=False),
    pa.field("target", pa.int64(), nullable=False),
    pa.field("items", pa.list_(pa.int64()), nullable=False),  # best first, -1 = no item
    pa.field("scores", pa.list_(pa.float64()), nullable=False),  # beam log-probability per item
    pa.field("invalid", pa.int64(), nullable=False),  # finished beams that were no item
])


def fixed_batches(samples: pa.Table, batch_size: int) -> list[pa.Table]:
    """Sort by history length (less padding) then row, and cut into blocks of ``batch_size`` rows."""
    lengths = pc.list_value_length(samples.column("history")).to_numpy(zero_copy_only=False)
    order = np.lexsort((samples.column("row").to_numpy(), lengths))
    ordered = samples.take(pa.array(order))
    return [ordered.slice(s, batch_size) for s in range(0, len(ordered), batch_size)]


class BeamSearchActor:
    """Ray Data callable class: loads the checkpoint and the trie once, scores one batch per call."""

    def __init__(self, checkpoint: Any, codes_path: Any, num_beams: int, top_k: int, device: str, threads: int,
                 max_history: int = -1):
        from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

        from ray_rec.nodecache import localize
        from ray_rec.runtime import set_threads, setup_env
        from ray_rec.sid.trie import SIDTrie

        setup_env()
        set_threads(threads)
        # paths, or references into remote storage copied to this node once
        checkpoint, codes_path = localize(checkpoint), localize(codes_path)
        self.tokenizer = PreTrainedTokenizerFast.from_pretrained(checkpoint)
        self.model = AutoModelForCausalLM.from_pretrained(checkpoint).to(device).eval()
        table = artifacts.read_codes(codes_path)
        item_ids, codes = table.column("item_id").to_numpy(), table.column("codes").to_pylist()
        self.codes_of = codes_by_item(table)
        self.trie = SIDTrie.from_tokenizer(codes, self.tokenizer, item_ids=item_ids).to(device)
        self.num_beams, self.top_k = num_beams, top_k
        # Cut histories as training did (the SFT stage records it) unless told otherwise; 0 = keep them whole.
        if max_history < 0:
            max_history = trained_max_history(checkpoint)
        self.max_history = max_history

    def __call__(self, batch: pa.Table) -> pa.Table:
        from ray_rec.lm.prompts import encode_prompt
        from ray_rec.sid.beam import constrained_beam_search

        cut = -self.max_history if self.max_history > 0 else 0
        prompts = [encode_prompt(self.tokenizer, [self.codes_of[i] for i in h[cut:]])
                   for h in batch.column("history").to_pylist()]
        result = constrained_beam_search(self.model, self.tokenizer, prompts, self.trie, self.num_beams,
                                         self.top_k, batch_size=len(prompts))
        return pa.table({
            "row": batch.column("row"), "user_id": batch.column("user_id"), "target": batch.column("target"),
            "items": pa.array(result.items.tolist(), pa.list_(pa.int64())),
            "scores": pa.array(result.scores.tolist(), pa.list_(pa.float64())),
            "invalid": pa.array(result.invalid, pa.int64()),
        }, schema=PREDICTIONS)


def predict(cfg: EvalConfig, samples: pa.Table, checkpoint: Path, codes_path: Path) -> pa.Table:
    """Run the actor pool over fixed batches of ``samples`` -> PREDICTIONS table sorted by row."""
    import ray

    blocks = fixed_batches(samples.select(["row", "user_id", "history", "target"]), cfg.batch_size)
    ds = ray.data.from_arrow(blocks).map_batches(
        BeamSearchActor,
        fn_constructor_kwargs=dict(checkpoint=stages.worker_ref(cfg, checkpoint),
                                   codes_path=stages.worker_ref(cfg, codes_path), num_beams=cfg.num_beams,
                                   top_k=cfg.top_k, device=cfg.resources.device, threads=cfg.resources.threads_per_worker,
                                   max_history=cfg.max_history),
        batch_size=cfg.batch_size, batch_format="pyarrow", udf_modifying_row_count=False,
        compute=ray.data.ActorPoolStrategy(size=cfg.resources.workers),
        num_cpus=cfg.resources.cpus_per_worker, num_gpus=1 if cfg.resources.use_gpu else 0,
    )
    table = pa.concat_tables(ray.get(ds.to_arrow_refs()))
    return table.take(pc.sort_indices(table, [("row", "ascending")]))


def score(predictions: pa.Table, ks: list[int]) -> dict[str, float]:
    """HR@K / NDCG@K over the PREDICTIONS table, plus CC and the user count."""
    items = np.array(predictions.column("items").to_pylist(), dtype=np.int64).reshape(len(predictions), -1)
    ranks = ranks_from_lists(items, predictions.column("target").to_numpy())
    metrics = hr_ndcg(ranks, ks)
    metrics["cc"] = int(np.sum(predictions.column("invalid").to_numpy()))
    metrics["users"] = len(predictions)
    return metrics


def require_gpus(cfg: EvalConfig) -> None:
    """Fail fast instead of waiting forever for GPUs the cluster does not have."""
    import ray

    if cfg.resources.use_gpu and ray.cluster_resources().get("GPU", 0) < 1:
        raise InputError("resources.use_gpu=true but the Ray cluster has no GPU; leave resources.use_gpu false (CPU actors)")


def run_evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Evaluate ``cfg.checkpoint`` on ``cfg.split``; write and return the metrics. An evaluation already
    finished with the same config, checkpoint, SIDs and samples is not redone (its metrics are returned)."""
    paths = RunPaths(cfg.run)
    out_dir = paths.eval_dir(cfg.name, cfg.split)
    checkpoint = stages.eval_checkpoint(cfg)
    if not (checkpoint / "config.json").is_file():
        raise InputError(f"{checkpoint}: no Hugging Face model (config.json missing); train one with `ray-rec sft` "
                         "or pass --checkpoint")
    codes_path = stages.model_codes(cfg, checkpoint)
    if stages.up_to_date("evaluate", cfg) and (out_dir / "metrics.json").is_file():
        return json.loads((out_dir / "metrics.json").read_text())
    codes_table = artifacts.read_codes(codes_path)
    check_trained_codes(checkpoint, codes_table, codes_path)
    item_ids = codes_table.column("item_id").to_numpy()
    samples = samples_with_sids(artifacts.read_samples(paths.samples(cfg.split)), item_ids, paths.samples(cfg.split),
                                cfg.max_users)
    if len(samples) == 0:
        raise InputError(f"{paths.samples(cfg.split)}: no samples to evaluate")

    from ray_rec.runtime import init_ray
    stages.begin("evaluate", cfg)
    init_ray()
    require_gpus(cfg)
    started = time.time()
    predictions = predict(cfg, samples, checkpoint, codes_path)
    seconds = time.time() - started
    metrics = score(predictions, list(cfg.ks))
    metrics.update(seconds=round(seconds, 3), users_per_s=round(len(predictions) / seconds, 2))
    keys = [f"{m}@{k}" for k in cfg.ks for m in ("hr", "ndcg")]
    write_parquet(predictions, out_dir / "predictions.parquet", PREDICTIONS)
    write_json({"split": cfg.split, "checkpoint": str(checkpoint), "config": to_dict(cfg), **metrics},
               out_dir / "metrics.json")
    write_text(f"# {cfg.name} on {cfg.split} ({len(predictions)} users, {cfg.num_beams} beams, "
               f"CC={metrics['cc']})\n\n" + format_table({cfg.name: metrics}, keys), out_dir / "metrics.md")
    stages.finish("evaluate", cfg, started, users=len(predictions), cc=metrics["cc"])
    return {"split": cfg.split, "checkpoint": str(checkpoint), "config": to_dict(cfg), **metrics}
