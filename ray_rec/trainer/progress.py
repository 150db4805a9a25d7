"""Progress of a training run: throughput, progress lines, the best evaluation and early stopping, and
fault injection for tests. Shared by SFT and GRPO (``train_loop_per_worker``) and by SASRec.

An evaluation ends the same way in the SFT and GRPO loops: :func:`end_evaluation` tracks the best value
and marks the trainer state, the loop reports its metrics with a checkpoint
(:func:`ray_rec.trainer.checkpoint.report_lm_checkpoint`), rank 0 writes :func:`log_evaluation`'s
line, and the loop stops when patience ran out. SASRec calls :func:`track_best` directly (it keeps its
best weights in memory, and ``select=last`` keeps every epoch's).
"""

from __future__ import annotations

import os
import resource
import sys
import time
from typing import Any

import torch


def log(text: str) -> None:
    """One progress line (sys.stdout.write: Ray Train's patched print would show it twice)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def peak_memory_mb(device: torch.device) -> float:
    """Peak resident memory of this process (CPU) or peak allocated GPU memory, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Meter:
    """Training tokens/s of this rank over optimizer steps (forward, backward, step; no eval or
    checkpoint), leaving out the first ``skip`` steps after a (re)start as warm-up."""

    def __init__(self, skip: int = 1):
        self.skip, self.steps, self.tokens, self.seconds = skip, 0, 0, 0.0

    def add(self, tokens: int, seconds: float) -> None:
        self.steps += 1
        if self.steps > self.skip:
            self.tokens, self.seconds = self.tokens + tokens, self.seconds + seconds

    def rate(self) -> float:
        return self.tokens / self.seconds if self.seconds else float("nan")

    def reduce(self, device: torch.device, world: int) -> tuple[float, float]:
        """(tokens/s summed over ranks, largest peak memory of any rank in MiB): a collective."""
        rate = torch.tensor([self.rate() if self.seconds else 0.0], dtype=torch.float64, device=device)
        peak = torch.tensor([peak_memory_mb(device)], dtype=torch.float64, device=device)
        if world > 1:
            torch.distributed.all_reduce(rate)
            torch.distributed.all_reduce(peak, op=torch.distributed.ReduceOp.MAX)
        return float(rate), float(peak)


def track_best(state: dict, key: str, value: float, higher_is_better: bool, patience: int,
               keep_every: bool = False) -> bool:
    """Record an evaluation in ``state`` (``state[key]`` the best value so far, ``bad_evals`` the evaluations
    since the last kept one); True when ``patience`` (> 0) evaluations in a row were not kept.

    An evaluation is kept when it beats the best (``bad_evals`` is then 0). ``keep_every`` keeps every
    one, so patience never stops the run (SASRec's ``select=last``: the last weights are the result);
    ``state[key]`` still follows the best value.

    >>> s = {"best": None, "bad_evals": 0}
    >>> [track_best(s, "best", v, higher_is_better=True, patience=2) for v in (0.1, 0.3, 0.2, 0.25)], s["best"]
    ([False, False, False, True], 0.3)
    >>> s = {"best": None, "bad_evals": 0}
    >>> [track_best(s, "best", v, True, 1, keep_every=True) for v in (0.3, 0.2)], s
    ([False, False], {'best': 0.3, 'bad_evals': 0})
    """
    best = state[key]
    better = best is None or (value > best if higher_is_better else value < best)
    state[key] = value if better else best
    state["bad_evals"] = 0 if better or keep_every else state["bad_evals"] + 1
    return bool(patience) and state["bad_evals"] >= patience


def end_evaluation(state: dict, step: int, key: str, value: float, higher_is_better: bool, patience: int) -> bool:
    """:func:`track_best` on an evaluation after optimizer ``step``, and mark the trainer state (the one a
    checkpoint is written with) as at ``step``, stopped when patience ran out; returns that stop."""
    stop = track_best(state, key, value, higher_is_better, patience)
    state["step"], state["stopped"] = step, stop
    return stop


def log_evaluation(tag: str, step: int, name: str, value: float, best: float, stop: bool) -> None:
    """The progress line of an evaluation, e.g. ``[sft] step 40: valid loss 1.2345 (best 1.2000)``."""
    log(f"[{tag}] step {step}: {name} {value:.4f} (best {best:.4f})" + (" - stopping early" if stop else ""))


def agree(flag: bool) -> bool:
    """Rank 0's decision, shared with every rank (keeps DDP workers in lock-step when a decision, such
    as a wall-clock limit, could differ between ranks); identity without a process group."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    box: list[Any] = [flag]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def maybe_crash(cfg, step: int, rank: int, marker: str) -> None:
    """Fault injection for tests: worker ``crash_rank`` dies at ``crash_at_step``, the first time only.
    ``cfg``: any stage config with a ``train`` section (SFT and RL share it)."""
    from ray_rec.nodecache import marker_exists, write_marker

    if step == cfg.train.crash_at_step and rank == cfg.train.crash_rank and marker and not marker_exists(marker):
        write_marker(marker, f"worker {rank} exited at step {step}\n")
        # Ray Train registers a reported checkpoint when its controller next polls the workers; dying
        # right after a report could beat that poll, and the restart would then begin from scratch.
        time.sleep(3.0)
        os._exit(1)


def worker_nodes() -> list[str]:
    """The Ray node id of every worker, in rank order (collective: every rank calls it). Recorded in the
    trainer state so a stage's record says where it trained."""
    import ray
    import torch.distributed as dist

    node = ray.get_runtime_context().get_node_id()
    if not (dist.is_available() and dist.is_initialized()):
        return [node]
    nodes: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(nodes, node)
    return [str(n) for n in nodes]
