"""Run the toy training loop under Ray Train ``TorchTrainer``: N data-parallel workers, DDP over gloo
on CPU or NCCL on GPU, metrics and checkpoints through ``ray.train.report``.

Outputs (``RunPaths(run).toy_train_dir(name)``): Ray Train's checkpoints, ``metrics.json``
(the final validation, test and most-popular metrics), ``history.json`` (one row per epoch),
``curves.png`` and ``stage.json``. Starting a run whose name exists resumes it from its newest
checkpoint (more epochs continue it; the same config again returns the stored metrics at once)::

    ray-rec toy train --dataset toy --num-items 200 --max-len 50 --epochs 3
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

import torch
from torch import nn

from ray_rec import stages
from ray_rec.config import from_dict, to_dict
from ray_rec.errors import InputError
from ray_rec.io import save_figure, write_json
from ray_rec.metrics import format_table
from ray_rec.paths import RunPaths
from ray_rec.toy.config import ToyConfig
from ray_rec.toy.loop import fit, load_state, save_state
from ray_rec.trainer.launch import location

# Config fields that do not change what is trained.


class RayTrainSession:
    """The loop's view of a Ray Train worker (see ``ray_rec.toy.loop.Session``)."""

    def __init__(self, device: str) -> None:
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        self.rank, self.world_size = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device() if device == "cuda" else torch.device("cpu")

    def wrap(self, model: nn.Module) -> nn.Module:
        if self.world_size == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def restore(self) -> dict[str, Any] | None:
        import ray.train

        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            return None
        with ckpt.as_directory() as folder:
            return load_state(folder)

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        import ray.train

        if state is None:  # other ranks, or an epoch without a checkpoint: still a barrier for all
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            save_state(state, folder)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder),
                             checkpoint_dir_name=f"checkpoint_epoch{state['epoch']:05d}")


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train ``train_loop_per_worker``: rebuild the config, fetch the sequences, run the loop."""
    from ray_rec.runtime import setup_env

    setup_env()  # the project's environment, whatever the node's raylet was started with
    import ray

    from ray_rec.runtime import set_threads

    cfg = from_dict(ToyConfig, config["cfg"])
    set_threads(cfg.resources.threads_per_worker)
    seqs = config["seqs"]
    if isinstance(seqs, ray.ObjectRef):
        seqs = ray.get(seqs)
    fit(cfg, seqs, RayTrainSession(cfg.resources.device))


def check_device(cfg: ToyConfig) -> None:
    """Refuse ``resources.use_gpu`` in one sentence when no GPU can serve it."""
    if not cfg.resources.use_gpu:
        return
    import ray

    if ray.is_initialized() and os.environ.get("RAY_ADDRESS"):
        # A cluster may add GPU nodes on demand (see cluster.yaml), so only warn.
        if ray.cluster_resources().get("GPU", 0) < 1:
            print("[toy] no GPU in the cluster yet; waiting for the autoscaler to add GPU workers", flush=True)
        return
    if not torch.cuda.is_available():
        raise InputError("resources.use_gpu (--use-gpu) was requested but this machine has no CUDA GPU; "
                         "drop it or run on a GPU node")
    if torch.cuda.device_count() < cfg.resources.workers:
        raise InputError(f"resources.use_gpu with {cfg.resources.workers} workers needs {cfg.resources.workers} "
                         f"GPUs, this machine has {torch.cuda.device_count()}; lower --workers")


def run_toy_train(cfg: ToyConfig) -> dict[str, Any]:
    """Train (or resume) the toy model on Ray Train -> final metrics (valid, ``test_*``, ``popular_*``)."""
    from ray_rec.toy.data import load_sequences

    started = time.time()
    paths = RunPaths(cfg.run)
    out = paths.toy_train_dir(cfg.name)
    if stages.up_to_date("toy_train", cfg):
        print(f"[toy] {out} already holds this run; delete it or change the config to retrain", flush=True)
        return json.loads((out / "metrics.json").read_text())
    if cfg.resources.use_gpu and not os.environ.get("RAY_ADDRESS"):
        check_device(cfg)  # before starting Ray: a local run needs a local GPU
    seqs = load_sequences(cfg.data, cfg.seed)  # bad JSONL fails here, before anything is written
    stages.begin("toy_train", cfg)

    import ray
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from ray_rec.runtime import init_ray

    init_ray()
    check_device(cfg)
    cuda = cfg.resources.use_gpu
    resources = {"CPU": cfg.resources.cpus_per_worker, **({"GPU": 1} if cuda else {})}
    storage_path, filesystem = paths.storage.train_storage(out.parent)
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"cfg": to_dict(cfg), "seqs": ray.put(seqs)},
        scaling_config=ScalingConfig(num_workers=cfg.resources.workers, use_gpu=cuda, resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if cuda else "gloo"),
        run_config=RunConfig(name=cfg.name, storage_path=storage_path, storage_filesystem=filesystem,
                             checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.num_to_keep)),
    )
    result = trainer.fit()
    # The final state holds the whole history, also when this call had nothing left to train.
    with result.checkpoint.as_directory() as folder:
        state = load_state(folder)
    metrics, history = dict(state["metrics"]), list(state["history"])
    write_json(metrics, out / "metrics.json")
    write_json(history, out / "history.json")
    plot_history(history, out / "curves.png")
    stages.finish("toy_train", cfg, started, epochs=len(history), checkpoint=location(result.checkpoint))
    print(summary_table(metrics), flush=True)
    return metrics


def summary_table(metrics: dict[str, Any]) -> str:
    """Markdown table: the model on valid and test next to the most-popular baseline on test."""
    keys = [k for k in metrics if k.startswith(("hr@", "ndcg@"))]
    rows = {"toy (valid)": metrics,
            "toy (test)": {k: metrics.get(f"test_{k}") for k in keys if f"test_{k}" in metrics},
            "most popular (test)": {k: metrics.get(f"popular_{k}") for k in keys if f"popular_{k}" in metrics}}
    return format_table(rows, keys)


def plot_history(history: list[dict[str, Any]], path: Any) -> None:
    """Train loss and validation NDCG@10 per epoch, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.plot(epochs, [h["train_loss"] for h in history], marker="o")
    a.set(xlabel="epoch", ylabel="train loss", title="training loss")
    b.plot(epochs, [h["ndcg@10"] for h in history], marker="o", label="model (valid)")
    if "popular_ndcg@10" in history[-1]:
        b.axhline(history[-1]["popular_ndcg@10"], color="grey", ls="--", label="most popular (test)")
    b.set(xlabel="epoch", ylabel="NDCG@10", title="validation NDCG@10")
    b.legend()
    save_figure(fig, path)
