"""Train and score SASRec under Ray Train: ``run_sasrec(cfg)`` (also ``ray-rec baseline sasrec``).

Reads ``<run>/data/samples_{train,valid,test}.parquet`` (schema SAMPLES) and ``<run>/data/items.parquet``
for the catalogue size, trains with DDP on ``cfg.resources.workers`` Ray Train workers, stops early on valid
NDCG@10, scores valid and test with the shared metric code (full ranking, padding excluded) and writes
``<run>/baseline/sasrec/{metrics.json, metrics.md, curve.png, model/, item_embeddings.parquet}``. A
finished run with the same config is not redone. Best tracking, early stopping and reporting come from
the trainer kit that SFT and GRPO use (:mod:`ray_rec.trainer`); the epochs, the optimizer and the
weights kept (in memory, one checkpoint at the end) are SASRec's own.

``item_embeddings.parquet`` (schema EMBEDDINGS) holds the trained item embedding of every catalogue
item: a collaborative representation that the SID stage can quantize instead of (or beside) the text
embeddings, so items bought in the same contexts share SID prefixes::

    ray-rec sid build --run runs/demo --set embeddings=runs/demo/baseline/sasrec/item_embeddings.parquet --set name=cf

    ray-rec baseline sasrec --config jobs/configs/sasrec.yaml --set run=runs/demo
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from ray_rec import artifacts
from ray_rec.baseline.config import SASRecConfig
from ray_rec.baseline.sasrec import SASRec
from ray_rec.config import from_dict, to_dict
from ray_rec.data.samples import user_sequences, windows
from ray_rec.errors import InputError, at
from ray_rec.metrics import format_table, hr_ndcg, ranks_from_scores
from ray_rec.trainer.checkpoint import report
from ray_rec.trainer.progress import agree, track_best

HISTORY_FILE = "history.json"     # per-epoch rows, inside the final checkpoint


# ----------------------------------------------------------------------------- data
def count_items(items_path: str | Path) -> int:
    """Catalogue size V = max item id + 1 of an items Parquet (schema ITEMS)."""
    ids = artifacts.read_items(items_path, columns=["item_id"]).column("item_id").to_numpy()
    if ids.size == 0 or ids.min() < 0:
        raise InputError(f"{at(items_path, field='item_id')} needs at least one item and ids >= 0")
    return int(ids.max()) + 1


def samples_arrays(table: pa.Table, num_items: int,
                   path: str | Path = "<samples>") -> tuple[np.ndarray, pa.ListArray, np.ndarray]:
    """A SAMPLES table (:func:`ray_rec.artifacts.read_samples` of ``path``, named in errors) ->
    (user_id (N,), history list array, target (N,)), every id checked to lie in [0, V)."""
    history = table.column("history").combine_chunks()
    targets = table.column("target").to_numpy()
    flat = history.flatten().to_numpy()
    for name, values, rows in (("target", targets, np.arange(len(targets))),
                               ("history", flat, _row_of_values(history))):
        bad = np.flatnonzero((values < 0) | (values >= num_items))
        if bad.size:
            raise InputError(f"{at(path, int(rows[bad[0]]), name)} item id {int(values[bad[0]])} "
                             f"is outside the catalogue [0, {num_items})")
    return table.column("user_id").to_numpy(), history, targets


def _row_of_values(lists: pa.ListArray) -> np.ndarray:
    """Row index of every flattened value of a list array."""
    lengths = np.diff(lists.offsets.to_numpy())
    return np.repeat(np.arange(len(lengths)), lengths)


def pad_left(lists: pa.ListArray, width: int, tail: np.ndarray | None = None) -> np.ndarray:
    """Lists of 0-based ids (+ an optional appended ``tail`` id per row) -> (N, width) shifted ids
    (+1), left-padded with 0, keeping the newest ``width`` items of each row."""
    offsets = lists.offsets.to_numpy()
    offsets = offsets - offsets[0]  # a sliced array's offsets do not start at 0
    values = lists.flatten().to_numpy() + 1
    lengths = np.diff(offsets)
    rows = _row_of_values(lists)
    if tail is not None:  # append one item per row
        values = np.insert(values, offsets[1:], tail + 1)
        rows = np.insert(rows, offsets[1:], np.arange(len(lengths)))
        lengths = lengths + 1
    position = np.arange(values.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    column = width - lengths[rows] + position
    keep = column >= 0
    out = np.zeros((len(lengths), width), dtype=np.int64)
    out[rows[keep], column[keep]] = values[keep]
    return out


def training_arrays(users: np.ndarray, history: pa.ListArray, targets: np.ndarray, max_len: int,
                    objective: str) -> tuple[np.ndarray, np.ndarray]:
    """Samples -> (inputs (N, L), labels (N, L)) shifted ids; label 0 = no loss at that position.

    'last': one row per sample, the label is its target at the final position. 'all': the users'
    sequences are rebuilt from the samples and cut into windows of ``max_len + 1`` items that end at
    the newest item (:func:`ray_rec.data.samples.windows`); inputs are a window without its last item
    and labels the same shifted by one, so every training target is labelled exactly once even where
    sample histories are capped (a long user's overlapping samples would otherwise count ~max_len times)."""
    if objective == "last":
        inputs = pad_left(history, max_len)
        labels = np.zeros_like(inputs)
        labels[:, -1] = targets + 1
        return inputs, labels
    seqs = user_sequences(users.tolist(), history.to_pylist(), targets.tolist())
    pieces = [w for seq in seqs for w in windows(seq, max_len + 1) if len(w) >= 2]
    full = pad_left(pa.array(pieces, pa.list_(pa.int64())), max_len + 1)
    inputs, labels = full[:, :-1].copy(), full[:, 1:].copy()
    labels[inputs == 0] = 0  # nothing precedes a sequence's first item
    return inputs, labels


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def rank_targets(model: SASRec, inputs: np.ndarray, targets: np.ndarray, batch_size: int = 512,
                 device: str | torch.device = "cpu") -> np.ndarray:
    """inputs: (N, L) shifted histories; targets: (N,) 0-based -> (N,) 0-based full-ranking ranks."""
    model.eval()
    ranks = []
    for start in range(0, len(inputs), batch_size):
        seq = torch.as_tensor(inputs[start:start + batch_size], device=device)
        scores = model.score(seq).float().cpu().numpy()
        ranks.append(ranks_from_scores(scores, targets[start:start + batch_size] + 1, exclude=[0]))
    return np.concatenate(ranks) if ranks else np.zeros(0)


def _gather_ranks(local: np.ndarray) -> np.ndarray:
    """Concatenate every worker's ranks (identity on one worker)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return local
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, local)
    return np.concatenate(parts)


# ----------------------------------------------------------------------------- training
def train_loop_per_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: DDP training with early stopping, then test scoring of the kept weights."""
    from ray_rec.runtime import setup_env

    setup_env()  # the project's environment, whatever the node's raylet was started with
    import ray.train
    import ray.train.torch

    from ray_rec.runtime import set_threads

    cfg = from_dict(SASRecConfig, config["cfg"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    set_threads(cfg.resources.threads_per_worker)
    torch.manual_seed(cfg.seed)
    device = ray.train.torch.get_device()
    num_items = config["num_items"]

    from ray_rec.nodecache import localize

    files = {s: localize(config[s]) for s in ("train", "valid", "test")}  # copied to this node once if remote
    users, history, targets = samples_arrays(artifacts.read_samples(files["train"]), num_items, files["train"])
    inputs, labels = training_arrays(users, history, targets, cfg.max_len, cfg.objective)
    evals = {}
    for split in ("valid", "test"):
        _, h, t = samples_arrays(artifacts.read_samples(files[split]), num_items, files[split])
        part = np.array_split(np.arange(len(t)), world)[rank]  # each worker scores its share
        evals[split] = (pad_left(h, cfg.max_len)[part], t[part])

    core = SASRec(num_items, cfg.max_len, cfg.hidden, cfg.blocks, cfg.heads, cfg.dropout)
    model = ray.train.torch.prepare_model(core)
    optimizer = torch.optim.AdamW(core.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    per_worker = len(inputs) // world  # equal step counts on every worker
    local_batch = max(1, cfg.batch_size // world)
    # best_valid_ndcg: the best valid NDCG@10; bad_evals: epochs since the kept weights (track_best)
    tracker, best_epoch, best_state, history_rows = {"best_valid_ndcg": None, "bad_evals": 0}, 0, None, []
    started = time.time()

    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        order = rng.permutation(len(inputs))[rank * per_worker:(rank + 1) * per_worker]
        losses = []
        for start in range(0, per_worker, local_batch):
            idx = order[start:start + local_batch]
            seq = torch.as_tensor(inputs[idx], device=device)
            lab = torch.as_tensor(labels[idx], device=device)
            hidden = model(seq)
            keep = lab != 0
            loss = torch.nn.functional.cross_entropy(core.logits(hidden[keep]), lab[keep])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())

        valid = hr_ndcg(_gather_ranks(rank_targets(core, *evals["valid"], cfg.eval_batch_size, device)), cfg.ks)
        patience_out = track_best(tracker, "best_valid_ndcg", valid["ndcg@10"], higher_is_better=True,
                                  patience=cfg.patience, keep_every=cfg.select == "last")
        if tracker["bad_evals"] == 0:  # kept: a new best, or every epoch under select=last
            best_epoch, best_state = epoch, {k: v.detach().clone() for k, v in core.state_dict().items()}
        elapsed = time.time() - started
        row = {"epoch": epoch, "loss": float(np.mean(losses)), "seconds": elapsed,
               **{f"valid/{k}": v for k, v in valid.items()}}
        history_rows.append(row)
        # the wall clock differs between ranks: rank 0 decides for all
        stop = agree(patience_out or (cfg.time_limit_s > 0 and elapsed > cfg.time_limit_s))
        if stop or epoch == cfg.max_epochs:
            break
        report(row)

    core.load_state_dict(best_state)
    final = {split: hr_ndcg(_gather_ranks(rank_targets(core, *evals[split], cfg.eval_batch_size, device)), cfg.ks)
             for split in ("valid", "test")}
    metrics = {"valid": final["valid"], "test": final["test"], "best_epoch": best_epoch, "epochs": epoch,
               "train_seconds": time.time() - started, "train_samples": len(inputs),
               "train_positions": int((labels != 0).sum()), "params": core.num_parameters()}

    def write(folder: Path) -> None:  # rank 0's checkpoint: the kept weights and the per-epoch rows
        core.cpu().save(folder)
        # the per-epoch rows travel in the checkpoint: as a reported metric Ray would print them all
        (folder / HISTORY_FILE).write_text(json.dumps(history_rows) + "\n")

    report(metrics, write if rank == 0 else None)


# ----------------------------------------------------------------------------- stage
def run_sasrec(cfg: SASRecConfig) -> dict[str, Any]:
    """Train SASRec on the run folder's splits under Ray Train; write and return its metrics.

    Returns {"valid": {hr@K, ndcg@K}, "test": {...}, "best_epoch", "epochs", "train_seconds",
    "train_samples", "params", "model_dir", ...}."""
    from ray_rec import stages
    from ray_rec.paths import RunPaths

    paths = RunPaths(cfg.run)
    out = paths.sasrec_dir
    if not cfg.force and stages.up_to_date("sasrec", cfg) and (out / "metrics.json").is_file():
        print(f"sasrec: {paths.location(out)} already holds this config's results (set force=true to retrain)")
        if paths.sasrec_model.is_dir():  # a run older than the export has none yet
            ensure_item_embeddings(paths)
        return json.loads((out / "metrics.json").read_text())
    for split in ("train", "valid", "test"):  # the workers read them: refuse a bad file before Ray starts
        artifacts.require(paths.samples(split), artifacts.SAMPLES)
    started = time.time()
    stages.begin("sasrec", cfg)
    num_items = count_items(paths.items)
    result = _fit(cfg, num_items, paths, out)
    metrics = dict(result.metrics)
    with result.checkpoint.as_directory() as ckpt:
        model_dir = _install_model(Path(ckpt), paths.sasrec_model)
        metrics["history"] = json.loads((Path(ckpt) / HISTORY_FILE).read_text())
    metrics.update(num_items=num_items, model_dir=str(model_dir), config=to_dict(cfg))
    export_item_embeddings(model_dir, paths.items, paths.sasrec_embeddings)
    write_outputs(metrics, out)
    stages.finish("sasrec", cfg, started, test=metrics["test"], params=metrics["params"])
    return metrics


def export_item_embeddings(model_dir: str | Path, items_path: str | Path, out: str | Path) -> Path:
    """A trained SASRec's item embeddings -> ``out`` (schema EMBEDDINGS), one row per item of
    ``items_path``; row ``item_id + 1`` of the embedding table (row 0 is padding)."""
    from ray_rec.io import write_parquet
    from ray_rec.schema import EMBEDDINGS

    model = SASRec.load(model_dir)
    ids = artifacts.read_items(items_path, columns=["item_id"]).column("item_id").to_numpy()
    table = model.item_emb.weight.detach().cpu().float().numpy()
    if ids.size and ids.max() + 1 >= table.shape[0]:
        raise InputError(f"{at(items_path, field='item_id')} item {int(ids.max())} is outside the model's "
                         f"{table.shape[0] - 1} items ({model_dir}); retrain SASRec on this run's items")
    vectors = table[ids + 1]
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
    return write_parquet(pa.table({"item_id": ids, "embedding": embedding.cast(pa.list_(pa.float32()))}),
                         out, EMBEDDINGS)


def ensure_item_embeddings(paths: Any) -> Path:
    """``paths.sasrec_embeddings``, exported from the installed model when it is not there yet."""
    if not paths.sasrec_embeddings.is_file():
        if not paths.sasrec_model.is_dir():
            raise InputError(f"{paths.sasrec_model} does not exist; run `ray-rec baseline sasrec` first")
        export_item_embeddings(paths.sasrec_model, paths.items, paths.sasrec_embeddings)
    return paths.sasrec_embeddings


def _fit(cfg: SASRecConfig, num_items: int, paths: Any, out: Path) -> Any:
    """Launch the TorchTrainer and return its Result (raises the workers' error)."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from ray_rec import stages
    from ray_rec.runtime import init_ray

    init_ray()
    name = cfg.name or f"sasrec-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    storage_path, filesystem = paths.storage.train_storage(out / "ray")
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": to_dict(cfg), "num_items": num_items,
                           **{s: stages.worker_ref(cfg, paths.samples(s)) for s in ("train", "valid", "test")}},
        scaling_config=ScalingConfig(num_workers=cfg.resources.workers, use_gpu=cfg.resources.use_gpu,
                                     resources_per_worker={"CPU": cfg.resources.cpus_per_worker}),
        run_config=RunConfig(name=name, storage_path=storage_path, storage_filesystem=filesystem),
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    return result


def _install_model(checkpoint: Path, target: Path) -> Path:
    """Copy the reported checkpoint (model.pt + model.json) into the run folder atomically."""
    from ray_rec.io import atomic_dir

    with atomic_dir(target) as tmp:
        for name in ("model.pt", "model.json"):
            shutil.copy2(checkpoint / name, tmp / name)
    return target


def write_outputs(metrics: dict[str, Any], out: Path) -> None:
    """metrics.json, metrics.md (valid and test rows) and curve.png (loss and valid NDCG@10 per epoch)."""
    from ray_rec.io import write_json, write_text

    write_json(metrics, out / "metrics.json")
    keys = list(metrics["test"])
    table = format_table({f"SASRec ({split})": metrics[split] for split in ("valid", "test")}, keys)
    write_text(f"# SASRec\n\nbest epoch {metrics['best_epoch']} of {metrics['epochs']}, "
               f"{metrics['params']:,} parameters, {metrics['train_samples']:,} training rows, "
               f"{metrics['train_seconds']:.1f} s\n\n{table}", out / "metrics.md")
    plot_curve(metrics["history"], out / "curve.png")


def plot_curve(history: list[dict[str, float]], path: Path) -> None:
    """Training loss and valid NDCG@10 per epoch, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ray_rec.io import save_figure

    epochs = [row["epoch"] for row in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    left.plot(epochs, [row["loss"] for row in history])
    left.set(xlabel="epoch", ylabel="train cross-entropy")
    right.plot(epochs, [row["valid/ndcg@10"] for row in history])
    right.set(xlabel="epoch", ylabel="valid NDCG@10")
    fig.suptitle("SASRec training")
    save_figure(fig, path)
