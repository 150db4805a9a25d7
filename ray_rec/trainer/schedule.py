"""When and on what a Ray Train stage steps: the learning rate, step counts, evaluation cadence, and
which examples each rank takes at each optimizer step. Pure numpy/math, shared by SFT and GRPO.

An epoch is a seeded permutation of the examples (:func:`epoch_order`), a pure function of
(seed, epoch); step ``s`` therefore always sees the same examples, and a run restored at step ``s``
carries on exactly as an uninterrupted one would. ``cfg`` below is any stage config with ``train``
(:class:`~ray_rec.trainer.config.TrainSection`) and ``resources`` sections.
"""

from __future__ import annotations

import math

import numpy as np


def get_lr(step: int, total: int, lr: float, warmup: int, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from ``lr`` to ``lr * min_ratio`` at ``total``.

    >>> [round(get_lr(s, 10, 1.0, 2, 0.0), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.0]
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def steps_per_epoch(n_examples: int, global_batch: int) -> int:
    """Full global batches per epoch (the last partial batch is dropped)."""
    return n_examples // global_batch


def total_steps(per_epoch: int, epochs: float, max_steps: int) -> int:
    """Optimizer steps of the whole run: ``epochs`` passes (fractions allowed), capped at ``max_steps`` (0 = no cap).

    >>> total_steps(10, 2.5, 0), total_steps(10, 2.5, 7)
    (25, 7)
    """
    total = math.ceil(epochs * per_epoch)
    return min(total, max_steps) if max_steps else total


def eval_interval(eval_every: int, per_epoch: int) -> int:
    """Optimizer steps between evaluations: ``train.eval_every``, or one epoch when it is 0.

    >>> eval_interval(50, 157), eval_interval(0, 157)
    (50, 157)
    """
    return eval_every or max(1, per_epoch)


def is_eval_step(step: int, total: int, every: int) -> bool:
    """Whether the run evaluates (and checkpoints) after optimizer step ``step``: every ``every`` steps
    and after the last one.

    >>> [s for s in range(1, 11) if is_eval_step(s, 10, 4)]
    [4, 8, 10]
    """
    return step % every == 0 or step == total


def epoch_order(n: int, global_batch: int, seed: int, epoch: int, lengths: np.ndarray | None = None,
                group: int = 50) -> np.ndarray:
    """The example order of one epoch, (n,): a seeded permutation, the same on every rank.

    With ``lengths`` (tokens per example) it is grouped by length, as Hugging Face's
    ``group_by_length``: the permutation is cut into runs of ``group`` global batches, each run is
    sorted longest first and cut into batches, and the batches are shuffled. A batch then holds
    examples of similar length, so a padded batch is not as wide as the longest example of a random
    draw (whole user sequences vary from a few tokens to hundreds)."""
    rng = np.random.default_rng((seed, epoch))
    order = rng.permutation(n)
    if lengths is None:
        return order
    usable = (n // global_batch) * global_batch
    runs = [order[s:min(s + global_batch * group, usable)] for s in range(0, usable, global_batch * group)]
    grouped = np.concatenate([r[np.argsort(-lengths[r], kind="stable")] for r in runs] + [np.zeros(0, np.int64)])
    batches = grouped.reshape(-1, global_batch)[rng.permutation(usable // global_batch)]
    return np.concatenate([batches.ravel(), order[usable:]])


def rank_indices(step: int, n: int, cfg, rank: int, lengths: np.ndarray | None = None) -> np.ndarray:
    """Example indices (per_worker,) of ``rank`` at optimizer ``step``: every world-th example of the
    step's global batch in :func:`epoch_order` (so ranks get examples of similar length)."""
    g = cfg.train.global_batch_size
    per_epoch = steps_per_epoch(n, g)
    epoch, pos = divmod(step, per_epoch)
    batch = epoch_order(n, g, cfg.train.seed, epoch, lengths)[pos * g:(pos + 1) * g]
    return batch[rank::cfg.resources.workers]


def micro_batches(indices: np.ndarray, micro: int, lengths: np.ndarray | None = None) -> list[np.ndarray]:
    """One rank's examples of an optimizer step cut into micro-batches of ``micro``; with ``lengths``
    they are ordered longest first, so a padded micro-batch is only as wide as its own longest example.

    When each micro-batch's loss is divided by a fixed count rather than by its own size (SFT's
    ``tokens_per_micro_batch``), the step's gradient does not depend on which micro-batch an example is in.

    >>> [m.tolist() for m in micro_batches(np.array([0, 1, 2, 3]), 2, np.array([5, 9, 1, 7]))]
    [[1, 3], [0, 2]]
    >>> [m.tolist() for m in micro_batches(np.array([4, 2, 7]), 2)]
    [[4, 2], [7]]
    """
    if lengths is not None:
        indices = indices[np.argsort(-lengths[indices], kind="stable")]
    return [indices[s:s + micro] for s in range(0, len(indices), micro)]
