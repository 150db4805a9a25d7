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

from ray_rec import artifacts
from ray_rec.config import to_dict
from ray_rec.errors import InputError, at
from ray_rec.eval.config import EvalConfig
from ray_rec.io import write_json, write_parquet, write_text
from ray_rec.metrics import format_table, hr_ndcg, ranks_from_lists
from ray_rec.paths import RunPaths
from ray_rec.stage import is_done, mark_done

# fields that change how the work is spread, not what is computed
_LAYOUT_FIELDS = ("num_actors", "device", "cpus_per_actor", "threads_per_actor")

PREDICTIONS = pa.schema([
    pa.field("row", pa.int64(), nullable=False),  # row of the sample in samples_<split>.parquet
    pa.field("user_id", pa.int64(), nullable=False),
    pa.field("target", pa.int64(), nullable=False),
    pa.field("items", pa.list_(pa.int64()), nullable=False),  # best first, -1 = no item
    pa.field("scores", pa.list_(pa.float64()), nullable=False),  # beam log-probability per item
    pa.field("invalid", pa.int64(), nullable=False),  # finished beams that were no item
])


def read_codes(path: Path) -> tuple[np.ndarray, list[list[int]]]:
    """codes.parquet (schema CODES) -> (item_ids (N,), codes per item)."""
    table = artifacts.read_codes(path)
    return table.column("item_id").to_numpy(), table.column("codes").to_pylist()


def read_samples(path: Path, known_items: np.ndarray, max_users: int = 0) -> pa.Table:
    """samples_<split>.parquet -> table with a ``row`` column; every item must have a SID."""
    table = artifacts.read_samples(path)
    if max_users:
        table = table.slice(0, max_users)
    known = set(known_items.tolist())
    targets, histories = table.column("target").to_pylist(), table.column("history").to_pylist()
    for row, (target, history) in enumerate(zip(targets, histories, strict=True)):
        for field, values in (("target", [target]), ("history", history)):
            unknown = [i for i in values if i not in known]
            if unknown:
                raise InputError(f"{at(path, row + 1, field)} item {unknown[0]} has no SID; "
                                 "were the SIDs built on the same catalogue?")
    return table.append_column("row", pa.array(np.arange(len(table)), pa.int64()))


def fixed_batches(samples: pa.Table, batch_size: int) -> list[pa.Table]:
    """Sort by history length (less padding) then row, and cut into blocks of ``batch_size`` rows."""
    lengths = pc.list_value_length(samples.column("history")).to_numpy(zero_copy_only=False)
    order = np.lexsort((samples.column("row").to_numpy(), lengths))
    ordered = samples.take(pa.array(order))
    return [ordered.slice(s, batch_size) for s in range(0, len(ordered), batch_size)]


class BeamSearchActor:
    """Ray Data callable class: loads the checkpoint and the trie once, scores one batch per call."""

    def __init__(self, checkpoint: str, codes_path: str, num_beams: int, top_k: int, device: str, threads: int,
                 max_history: int = -1):
        from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

        from ray_rec.runtime import set_threads, setup_env
        from ray_rec.sid.trie import SIDTrie

        setup_env()
        set_threads(threads)
        self.tokenizer = PreTrainedTokenizerFast.from_pretrained(checkpoint)
        self.model = AutoModelForCausalLM.from_pretrained(checkpoint).to(device).eval()
        item_ids, codes = read_codes(Path(codes_path))
        self.codes_of = dict(zip(item_ids.tolist(), codes, strict=True))
        self.trie = SIDTrie.from_tokenizer(codes, self.tokenizer, item_ids=item_ids).to(device)
        self.num_beams, self.top_k = num_beams, top_k
        # Cut histories as training did (the SFT stage records it) unless told otherwise; 0 = keep them whole.
        meta = Path(checkpoint) / "ray_rec_sft.json"
        if max_history < 0:
            max_history = int(json.loads(meta.read_text()).get("max_history", 0)) if meta.is_file() else 0
        self.max_history = max_history

    def __call__(self, batch: pa.Table) -> pa.Table:
        from ray_rec.eval.beam import constrained_beam_search
        from ray_rec.train.prompts import encode_prompt

        cut = -self.max_history if self.max_history > 0 else 0
        prompts = [_ids(encode_prompt(self.tokenizer, [self.codes_of[i] for i in h[cut:]]))
                   for h in batch.column("history").to_pylist()]
        result = constrained_beam_search(self.model, self.tokenizer, prompts, self.trie, self.num_beams,
                                         self.top_k, batch_size=len(prompts))
        return pa.table({
            "row": batch.column("row"), "user_id": batch.column("user_id"), "target": batch.column("target"),
            "items": pa.array(result.items.tolist(), pa.list_(pa.int64())),
            "scores": pa.array(result.scores.tolist(), pa.list_(pa.float64())),
            "invalid": pa.array(result.invalid, pa.int64()),
        }, schema=PREDICTIONS)


def _ids(encoded: Any) -> list[int]:
    """encode_prompt may return ids or a tokenizer encoding."""
    if isinstance(encoded, dict) or hasattr(encoded, "input_ids"):
        encoded = encoded["input_ids"]
    return [int(t) for t in encoded]


def predict(cfg: EvalConfig, samples: pa.Table, checkpoint: Path, codes_path: Path) -> pa.Table:
    """Run the actor pool over fixed batches of ``samples`` -> PREDICTIONS table sorted by row."""
    import ray

    blocks = fixed_batches(samples.select(["row", "user_id", "history", "target"]), cfg.batch_size)
    ds = ray.data.from_arrow(blocks).map_batches(
        BeamSearchActor,
        fn_constructor_kwargs=dict(checkpoint=str(checkpoint), codes_path=str(codes_path), num_beams=cfg.num_beams,
                                   top_k=cfg.top_k, device=cfg.device, threads=cfg.threads_per_actor,
                                   max_history=cfg.max_history),
        batch_size=cfg.batch_size, batch_format="pyarrow", udf_modifying_row_count=False,
        compute=ray.data.ActorPoolStrategy(size=cfg.num_actors),
        num_cpus=cfg.cpus_per_actor, num_gpus=1 if cfg.device == "cuda" else 0,
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


def trained_sid_method(checkpoint: Path) -> str:
    """The SID method recorded by the SFT stage in ``<checkpoint>/ray_rec_sft.json``."""
    from ray_rec.train.model import META_FILE

    meta_path = checkpoint / META_FILE
    try:
        return str(json.loads(meta_path.read_text())["sid_method"])
    except (OSError, KeyError, json.JSONDecodeError):
        raise InputError(f"{meta_path}: no readable sid_method (not a ray-rec SFT checkpoint?); "
                         "set sid_method, e.g. --set sid_method=rqkmeans") from None


def require_gpus(cfg: EvalConfig) -> None:
    """Fail fast instead of waiting forever for GPUs the cluster does not have."""
    import ray

    if cfg.device == "cuda" and ray.cluster_resources().get("GPU", 0) < 1:
        raise InputError("device=cuda but the Ray cluster has no GPU; use --device cpu")


def newer_than_inputs(out_dir: Path, inputs: list[Path]) -> bool:
    """True when ``out_dir``'s stage.json was written after every file of ``inputs`` (files or folders)
    last changed: a retrained checkpoint or rebuilt SIDs make a finished evaluation stale."""
    stamp = out_dir / "stage.json"
    files = [f for p in inputs for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]
    return stamp.is_file() and all(f.stat().st_mtime <= stamp.stat().st_mtime for f in files)


def run_evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Evaluate ``cfg.checkpoint`` on ``cfg.split``; write and return the metrics. An evaluation already
    finished with the same config, checkpoint, SIDs and samples is not redone (its metrics are returned)."""
    paths = RunPaths(cfg.run)
    out_dir = paths.eval_dir(cfg.name) / cfg.split
    checkpoint = Path(cfg.checkpoint) if cfg.checkpoint else paths.sft_model
    if not (checkpoint / "config.json").is_file():
        raise InputError(f"{checkpoint}: no Hugging Face model (config.json missing); train one with `ray-rec sft` "
                         "or pass --checkpoint")
    codes_path = paths.codes(cfg.sid_method or trained_sid_method(checkpoint))
    if is_done(out_dir, cfg, ignore=_LAYOUT_FIELDS) and newer_than_inputs(
            out_dir, [checkpoint, codes_path, paths.samples(cfg.split)]):
        return json.loads((out_dir / "metrics.json").read_text())
    item_ids, _ = read_codes(codes_path)
    samples = read_samples(paths.samples(cfg.split), item_ids, cfg.max_users)
    if len(samples) == 0:
        raise InputError(f"{paths.samples(cfg.split)}: no samples to evaluate")

    from ray_rec.runtime import init_ray
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
    mark_done(out_dir, cfg, started, ignore=_LAYOUT_FIELDS, users=len(predictions), cc=metrics["cc"])
    return {"split": cfg.split, "checkpoint": str(checkpoint), "config": to_dict(cfg), **metrics}
