"""The toy training loop, free of Ray: one function, ``fit``, driven by a small ``Session``.

The session says who this process is (rank, world size, device), wraps the model for data
parallelism, restores the latest checkpoint and reports metrics (with a checkpoint every
``train.checkpoint_every`` epochs and at the end). :class:`LocalSession` runs the loop in this
process, writing checkpoints to a folder; the Ray Train and Ray Tune sessions live in
``ray_rec.toy.train`` and ``ray_rec.toy.tune``.

A checkpoint holds model, optimizer, GradScaler, epoch, step, metric history and the RNG state of
every rank; shuffling is a pure function of (seed, epoch), so a resumed run continues exactly where
an uninterrupted one would be. Run it without Ray::

    python -m ray_rec.toy.loop --epochs 3     # or: ray-rec toy train (the same loop on Ray Train)
"""

from __future__ import annotations

import contextlib
import math
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ray_rec.io import atomic_dir
from ray_rec.metrics import hr_ndcg, ranks_from_scores
from ray_rec.toy.config import ToyConfig
from ray_rec.toy.data import Split, leave_one_out, train_item_counts
from ray_rec.toy.model import ToyRec

STATE_FILE = "state.pt"


class Session(Protocol):
    rank: int
    world_size: int
    device: torch.device

    def wrap(self, model: nn.Module) -> nn.Module: ...
    def restore(self) -> dict[str, Any] | None: ...
    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None: ...


# ----------------------------------------------------------------------------- small pure helpers

def epoch_order(n: int, seed: int, epoch: int, rank: int, world_size: int) -> torch.Tensor:
    """This rank's sample order for ``epoch``: a seeded permutation of range(n), cut to a multiple of
    world_size and strided by rank, so every rank runs the same number of batches -> (n // world,)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g)
    return perm[: (n // world_size) * world_size][rank::world_size]


def accumulation_sizes(batch_sizes: list[int], grad_accum: int) -> list[int]:
    """For each micro-batch, the number of samples in its accumulation group.

    >>> accumulation_sizes([4, 4, 4, 2], grad_accum=2)
    [8, 8, 6, 6]
    """
    out = []
    for start in range(0, len(batch_sizes), grad_accum):
        group = batch_sizes[start:start + grad_accum]
        out.extend([sum(group)] * len(group))
    return out


def rng_state(device: torch.device) -> dict[str, Any]:
    """Every RNG this process draws from, in a form ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    random.setstate(state["python"])


def save_state(state: dict[str, Any], folder: str | Path) -> None:
    torch.save(state, Path(folder) / STATE_FILE)


def load_state(folder: str | Path) -> dict[str, Any]:
    return torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=True)


def _gather(obj: Any, world_size: int) -> list[Any]:
    """All ranks' ``obj`` (a collective: every rank must call it)."""
    if world_size == 1 or not torch.distributed.is_initialized():
        return [obj]
    out: list[Any] = [None] * world_size
    torch.distributed.all_gather_object(out, obj)
    return out


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, session: Session, ks: list[int], batch_size: int) -> dict[str, float]:
    """HR@K / NDCG@K with full ranking over all items (padding excluded); each rank scores a
    strided shard and the ranks are gathered, so every rank returns the same metrics."""
    model = _unwrap(model)
    was_training = model.training
    model.eval()
    idx = torch.arange(session.rank, len(split), session.world_size)
    ranks = [np.empty(0)]
    for chunk in idx.split(batch_size):
        ids, mask, labels = (t.to(session.device) for t in split.batch(chunk))
        scores = model(ids, mask).float().cpu().numpy()
        ranks.append(ranks_from_scores(scores, labels.cpu().numpy(), exclude=[0]))
    model.train(was_training)
    return hr_ndcg(np.concatenate(_gather(np.concatenate(ranks), session.world_size)), ks)


def most_popular(counts: np.ndarray, split: Split, ks: list[int]) -> dict[str, float]:
    """The baseline every learned model must beat: rank all items by training popularity."""
    ranks = [ranks_from_scores(np.broadcast_to(counts, (len(chunk), counts.size)), split.labels[chunk].numpy(),
                               exclude=[0]) for chunk in torch.arange(len(split)).split(1024)]
    return hr_ndcg(np.concatenate(ranks) if ranks else np.empty(0), ks)


def _print(session: Session, metrics: dict[str, Any], epochs: int) -> None:
    if session.rank != 0:
        return
    shown = " ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith(("hr@", "ndcg@")))
    print(f"[toy] epoch {metrics['epoch']}/{epochs} step {metrics['step']} train_loss {metrics['train_loss']:.4f} "
          f"{shown} ({metrics['samples_per_s']:.0f} samples/s)", flush=True)


# ----------------------------------------------------------------------------- the loop

def fit(cfg: ToyConfig, seqs: list[list[int]], session: Session) -> dict[str, Any]:
    """Train ``cfg.train.epochs`` epochs (continuing from the session's checkpoint) -> final metrics."""
    rank, world, device, tc = session.rank, session.world_size, session.device, cfg.train
    splits = leave_one_out(seqs, cfg.data.max_len)
    train = splits["train"]
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    model = ToyRec(cfg.data.num_items, cfg.model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    amp_dtype = torch.bfloat16 if tc.amp_dtype == "bf16" else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=tc.amp and amp_dtype == torch.float16)
    # Each rank draws its own dropout masks.
    torch.manual_seed(cfg.seed + 1 + rank)
    random.seed(cfg.seed + 1 + rank)
    np.random.seed(cfg.seed + 1 + rank)
    start_epoch, step, history = 0, 0, []

    state = session.restore()
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, step, history = state["epoch"], state["step"], list(state["history"])
        if len(state["rng"]) == world:  # same world size: every rank continues its own streams
            set_rng_state(state["rng"][rank], device)
        if start_epoch >= tc.epochs:
            return dict(history[-1])
    model = session.wrap(model)
    model.train()

    for epoch in range(start_epoch, tc.epochs):
        started = time.perf_counter()
        batches = epoch_order(len(train), cfg.seed, epoch, rank, world).split(tc.batch_size)
        group_sizes = accumulation_sizes([len(b) for b in batches], tc.grad_accum)
        loss_sum, seen = 0.0, 0
        for i, index in enumerate(batches):
            ids, mask, labels = (t.to(device, non_blocking=True) for t in train.batch(index))
            boundary = (i + 1) % tc.grad_accum == 0 or i + 1 == len(batches)
            sync = contextlib.nullcontext() if boundary or world == 1 else model.no_sync()
            with sync:
                with torch.autocast(device.type, dtype=amp_dtype, enabled=tc.amp):
                    logits = model(ids, mask)
                loss_total = F.cross_entropy(logits.float(), labels, reduction="sum")
                # Dividing by the samples of the whole accumulation group makes N micro-batches of
                # size b step exactly like one batch of N*b, also for a short last group.
                scaler.scale(loss_total / group_sizes[i]).backward()
            if boundary:
                if tc.grad_clip > 0:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
                scaler.step(opt)
                scaler.update()
                opt.zero_grad(set_to_none=True)
                step += 1
            loss_sum += loss_total.item()
            seen += len(index)
        seconds = time.perf_counter() - started
        losses = _gather((loss_sum, seen), world)
        metrics: dict[str, Any] = {
            "epoch": epoch + 1, "step": step, "resumed_from_epoch": start_epoch,
            "train_loss": sum(s for s, _ in losses) / max(1, sum(n for _, n in losses)),
            "train_samples": sum(n for _, n in losses),
            "samples_per_s": world * seen / max(seconds, 1e-9),
            **evaluate(model, splits["valid"], session, cfg.ks, tc.eval_batch_size),
        }
        last = epoch + 1 == tc.epochs
        if last:
            test = evaluate(model, splits["test"], session, cfg.ks, tc.eval_batch_size)
            popular = most_popular(train_item_counts(seqs, cfg.data.num_items), splits["test"], cfg.ks)
            metrics.update({f"test_{k}": v for k, v in test.items()})
            metrics.update({f"popular_{k}": v for k, v in popular.items()})
        history.append(metrics)
        _print(session, metrics, tc.epochs)
        save = last or (epoch + 1) % tc.checkpoint_every == 0
        rngs = _gather(rng_state(device), world) if save else None  # collective: all ranks
        state = None
        if save and rank == 0:
            state = {"model": _unwrap(model).state_dict(), "optimizer": opt.state_dict(),
                     "scaler": scaler.state_dict(), "epoch": epoch + 1, "step": step,
                     "rng": rngs, "history": history, "metrics": metrics}
        session.report(metrics, state)
    return history[-1]


# ----------------------------------------------------------------------------- running without Ray

class LocalSession:
    """One process, no Ray: checkpoints go to ``<folder>/checkpoint_<epoch>/`` (newest ``keep`` kept)."""

    def __init__(self, folder: str | Path, device: str = "cpu", keep: int = 2) -> None:
        self.folder, self.keep = Path(folder), keep
        self.rank, self.world_size, self.device = 0, 1, torch.device(device)
        self.reports: list[dict[str, Any]] = []

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def checkpoints(self) -> list[Path]:
        return sorted(self.folder.glob("checkpoint_*"))

    def restore(self) -> dict[str, Any] | None:
        found = self.checkpoints()
        return load_state(found[-1]) if found else None

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        self.reports.append(metrics)
        if state is None:
            return
        with atomic_dir(self.folder / f"checkpoint_{state['epoch']:06d}") as tmp:
            save_state(state, tmp)
        for old in self.checkpoints()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)


def fit_local(cfg: ToyConfig, seqs: list[list[int]], folder: str | Path) -> dict[str, Any]:
    """The plain loop in this process (no Ray), checkpointing to ``folder``."""
    return fit(cfg, seqs, LocalSession(folder, cfg.resources.device, cfg.train.num_to_keep))


if __name__ == "__main__":
    import argparse

    from ray_rec.config import load_config
    from ray_rec.toy.data import load_sequences

    p = argparse.ArgumentParser(description="Train the toy model in this process, without Ray.")
    p.add_argument("--config", default=None)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--out", default="runs/toy-local")
    a = p.parse_args()
    c = load_config(ToyConfig, a.config, [f"train.epochs={a.epochs}", "resources.workers=1"])
    final = fit_local(c, load_sequences(c.data, c.seed), a.out)
    print({k: round(v, 4) for k, v in final.items() if isinstance(v, float) and math.isfinite(v)}, file=sys.stderr)
