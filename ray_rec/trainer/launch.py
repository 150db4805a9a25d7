"""Launch a Ray Train stage and collect what it produced: the parts SFT and GRPO share.

* :func:`torch_trainer` -- a ``TorchTrainer`` over the ``resources`` section's workers (NCCL on GPUs, gloo
  on CPUs), a named run under the stage folder (on the run's storage: a path or an object store, see
  :meth:`ray_rec.storage.RunStorage.train_storage`) that resumes from its latest checkpoint, the
  ``keep`` best checkpoints by one reported metric;
* :func:`best_checkpoint` -- the best reported checkpoint of a finished run; :func:`read_json` reads
  one JSON file of a checkpoint wherever it is stored;
* :func:`export_model` -- copy that checkpoint's Hugging Face files out (no optimizer state) with the
  model's ``ray_rec_sft.json`` (:mod:`ray_rec.lm.checkpoint`);
* :func:`crash_marker` -- where ``train.crash_at_step``'s once-per-run fault injection leaves its mark.

The worker loops stay with their stages (``ray_rec.train.loop``, ``ray_rec.rl.loop``); what they share
beside the launcher is the rest of this package (``schedule``, ``backend``, ``checkpoint``, ``progress``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ray_rec.io import atomic_dir
from ray_rec.lm.checkpoint import write_meta
from ray_rec.resources import Resources
from ray_rec.trainer.checkpoint import STATE_FILE

EXPORT_SKIP = {"deepspeed", "optimizer.pt", STATE_FILE}  # optimizer state, not part of the model


def torch_trainer(loop, loop_config: dict[str, Any], resources: Resources, max_failures: int, name: str,
                  storage: tuple[str, Any], keep: int, score_attribute: str, score_order: str):
    """A TorchTrainer over ``resources``' workers (surviving ``max_failures`` group failures) (one GPU each
    and NCCL when ``use_gpu``, else gloo), run ``name`` under ``storage`` = ``(storage_path,
    storage_filesystem)`` (the same name resumes), ``keep`` best checkpoints by ``score_attribute``."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    return TorchTrainer(
        loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=resources.workers, use_gpu=resources.use_gpu,
                                     resources_per_worker={"CPU": resources.cpus_per_worker,
                                                           **({"GPU": 1} if resources.use_gpu else {})}),
        torch_config=TorchConfig(backend="nccl" if resources.use_gpu else "gloo"),
        run_config=RunConfig(
            name=name, storage_path=storage[0], storage_filesystem=storage[1],
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=keep, checkpoint_score_attribute=score_attribute,
                                               checkpoint_score_order=score_order)),
    )


def best_checkpoint(result, key: str = "valid_loss", higher_is_better: bool = False):
    """The reported checkpoint with the best ``key`` (the lowest, or the highest when ``higher_is_better``;
    the latest on ties; NaN never wins), or the latest checkpoint when none is ranked."""
    sign = 1.0 if higher_is_better else -1.0
    ranked = [(sign * m.get(key, -sign * float("inf")), m.get("step", 0), c) for c, m in (result.best_checkpoints or [])
              if m.get(key) == m.get(key)]  # NaN never equals itself
    if ranked:
        return max(ranked, key=lambda r: (r[0], r[1]))[2]
    if result.checkpoint is None:
        raise RuntimeError(f"the run produced no checkpoint (error: {result.error})")
    return result.checkpoint


def location(checkpoint) -> str:
    """Where a checkpoint is stored, for records and messages: a path, or a URI on an object store."""
    scheme = getattr(checkpoint.filesystem, "type_name", "local")
    return checkpoint.path if scheme == "local" else f"{scheme}://{checkpoint.path}"


def read_json(checkpoint, name: str) -> Any:
    """The JSON file ``name`` of a checkpoint, read through the checkpoint's own filesystem."""
    with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{name}") as f:
        return json.loads(f.read())


def export_model(src, dest: Path, meta: dict[str, Any]) -> Path:
    """Copy the HF files of checkpoint ``src`` (a ``ray.train.Checkpoint`` on any storage) to ``dest``
    atomically, with ray_rec_sft.json."""
    with src.as_directory() as folder, atomic_dir(dest) as tmp:
        for f in Path(folder).iterdir():
            if f.name not in EXPORT_SKIP:
                (shutil.copytree if f.is_dir() else shutil.copy2)(f, tmp / f.name)
        write_meta(tmp, meta)
    return dest


def crash_marker(cfg, stage_dir: Path) -> str:
    """Marker file of train.crash_at_step under ``stage_dir/<name>`` (fault injection happens once per run
    name), a URI on remote storage so a worker on any node sees it; '' when no fault is asked for.
    ``cfg``: any stage config with ``run``, ``name`` and a ``train`` section."""
    from ray_rec.paths import RunPaths

    if cfg.train.crash_at_step < 0:
        return ""
    return RunPaths(cfg.run).location(stage_dir / cfg.name / "crash_marker")
