"""Checkpoints through Ray Train: report metrics with a checkpoint folder, and restore the latest one.

A stage's trainer state is a JSON-able dict that travels in every checkpoint as ``trainer_state.json``:
``step`` (optimizer steps done), the best evaluation so far and ``bad_evals`` (:func:`ray_rec.trainer.progress.track_best`),
``stopped`` (early stop), the ``train`` and ``valid`` histories, and ``resumed_at`` (the steps a run
was restored at, one entry per restart). A language-model checkpoint (SFT, GRPO) holds beside it the
Hugging Face model and tokenizer (rank 0) and the optimizer state (:meth:`Backend.save_optimizer`).

Every rank calls :func:`report` / :func:`report_lm_checkpoint` at the same point: Ray Train merges
the ranks' folders into one checkpoint and registers it with the reported metrics.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

STATE_FILE = "trainer_state.json"


def new_state(best_key: str) -> dict[str, Any]:
    """The trainer state of a fresh run; ``best_key`` names its best-evaluation entry.

    >>> new_state("best")
    {'step': 0, 'best': None, 'bad_evals': 0, 'stopped': False, 'train': [], 'valid': []}
    """
    return {"step": 0, best_key: None, "bad_evals": 0, "stopped": False, "train": [], "valid": []}


@contextlib.contextmanager
def restored(fresh: dict[str, Any]) -> Iterator[tuple[Path | None, dict[str, Any]]]:
    """(folder, state) of the run's latest Ray Train checkpoint, the folder readable inside the ``with``;
    the state is its ``trainer_state.json`` with the restored step appended to ``resumed_at``. A run
    without a checkpoint gets (None, ``fresh``)."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        yield None, fresh
        return
    with checkpoint.as_directory() as folder:
        state = json.loads((Path(folder) / STATE_FILE).read_text())
        state.setdefault("resumed_at", []).append(state["step"])
        yield Path(folder), state


def is_finished(state: dict[str, Any], total: int) -> bool:
    """A restored run that already stopped early or ran all ``total`` steps: nothing left to do."""
    return state["stopped"] or state["step"] >= total


def report(metrics: dict[str, Any], write: Callable[[Path], None] | None = None, name: str | None = None) -> None:
    """Report ``metrics`` to Ray Train; with ``write``, also a checkpoint: ``write(folder)`` fills a
    temporary folder with this rank's part, which Ray copies into the run's folder ``name`` (None: Ray
    names it). Every rank calls it at the same point; a rank without a part passes no ``write``."""
    import ray.train

    if write is None:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="ray_rec_ckpt_") as tmp:
        write(Path(tmp))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp), checkpoint_dir_name=name)


def write_lm_checkpoint(folder: Path, backend, tokenizer, state: dict[str, Any], rank: int) -> None:
    """This rank's part of a language-model checkpoint: rank 0 the Hugging Face model, tokenizer and
    ``trainer_state.json``; every rank its optimizer state (``backend``: a :class:`Backend`)."""
    from ray_rec.lm.checkpoint import save_sft_model

    if rank == 0:
        save_sft_model(backend.module, tokenizer, folder)
        (folder / STATE_FILE).write_text(json.dumps(state) + "\n")
    backend.save_optimizer(folder, rank)


def report_lm_checkpoint(backend, tokenizer, state: dict[str, Any], rank: int, metrics: dict[str, Any]) -> None:
    """Report ``metrics`` with a language-model checkpoint of step ``state["step"]``, in ``checkpoint_<step>``."""
    report(metrics, lambda folder: write_lm_checkpoint(folder, backend, tokenizer, state, rank),
           name=f"checkpoint_{state['step']:06d}")
