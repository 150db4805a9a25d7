"""Config sections that every Ray Train stage (SFT, GRPO) shares, and the checks they need together.

* :class:`TrainSection` -- optimisation: backend (DeepSpeed ZeRO or DDP), batch sizes, schedule,
  evaluation cadence, early stopping, checkpoints, failures survived, fault injection for tests;
* :class:`RayTrainStage` -- the mixin of a stage config with ``name``, ``train`` and ``resources``
  (:class:`ray_rec.resources.Resources`, the section every stage has): checks
  the layout (:func:`check_run_layout`) and derives the gradient accumulation.

A stage config keeps its own defaults by passing its own ``TrainSection(...)`` as the field default
(RLConfig does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ray_rec.config import ConfigError, option
from ray_rec.resources import Resources


@dataclass(frozen=True)
class TrainSection:
    """Optimisation, evaluation and checkpoints."""

    backend: Literal["deepspeed", "ddp"] = option("deepspeed", help="deepspeed (ZeRO, config built by "
                                                  "deepspeed_config.py) or ddp (torch DistributedDataParallel)")
    zero_stage: int = option(2, help="DeepSpeed ZeRO stage (0, 1 or 2; ZeRO-2 shards gradients and optimizer state)")
    precision: Literal["auto", "fp32", "bf16"] = option("auto", help="auto = bf16 on GPU, fp32 on CPU")
    global_batch_size: int = option(64, help="examples per optimizer step over all workers")
    micro_batch_size: int = option(16, help="examples per forward pass per worker; gradient accumulation makes "
                                            "up the rest of the global batch")
    epochs: float = option(3.0, help="passes over the training examples (fractions allowed)")
    max_steps: int = option(0, help="stop after this many optimizer steps (0 = no cap)")
    group_by_length: bool = option(False, help="batch examples of similar length together: ~2x the tokens/s on "
                                               "whole sequences, but the batches then hold one task and one kind "
                                               "of user each, and quality fell (Industrial sid_seq HR@10 .0966 vs "
                                               ".1163 with random batches, bench/results/quality_gen_ind_*.json)")
    sort_micro_batches: bool = option(True, help="order each step's examples longest first before cutting them into "
                                                 "micro-batches: less padding when gradient accumulation > 1, and "
                                                 "the same gradient (the loss is normalised per labelled token of "
                                                 "the step, not per micro-batch)")
    lr: float = option(1e-3, help="peak learning rate")
    min_lr_ratio: float = option(0.1, help="the cosine decays to lr x this at the last step")
    warmup_steps: int = option(20, help="linear warm-up steps from 0 to lr")
    weight_decay: float = option(0.01, help="AdamW weight decay of matrices (not of norms, biases, embeddings)")
    grad_clip: float = option(1.0, help="clip the global gradient norm to this (0 = off)")
    eval_every: int = option(50, help="optimizer steps between valid-loss evaluations and checkpoints; "
                                      "0 = once per epoch")
    valid_max_samples: int = option(512, help="valid samples (main task) in the valid loss; 0 = all")
    patience: int = option(0, help="stop after this many evaluations without a better valid loss (0 = never)")
    checkpoints_to_keep: int = option(2, help="best checkpoints (by valid loss) kept; the latest is always kept")
    log_every: int = option(10, help="optimizer steps between progress lines")
    seed: int = option(0, help="seed of model init, task sampling and data order")
    max_failures: int = option(2, affects_result=False,
                               help="worker-group failures survived by restarting from the latest checkpoint "
                                    "(-1 = unlimited)")
    crash_at_step: int = option(-1, help="TESTING ONLY: worker crash_rank exits at this step, once per run "
                                         "(a marker file remembers it); -1 = off")
    crash_rank: int = option(1, help="TESTING ONLY: which worker crash_at_step kills")

    def __post_init__(self) -> None:
        if self.max_failures < -1:
            raise ConfigError("train.max_failures must be >= 0, or -1 for unlimited")
        if self.zero_stage not in (0, 1, 2):
            raise ConfigError(f"train.zero_stage must be 0, 1 or 2, got {self.zero_stage}")
        for name in ("global_batch_size", "micro_batch_size", "log_every", "checkpoints_to_keep"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.epochs <= 0 or self.lr <= 0:
            raise ConfigError("train.epochs and train.lr must be positive")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"train.min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")
        for name in ("max_steps", "warmup_steps", "patience", "valid_max_samples", "eval_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")


class RayTrainStage:
    """What the Ray Train stage configs (SFTConfig, RLConfig) share; they have ``name``, ``train``
    (TrainSection) and ``resources`` (:class:`ray_rec.resources.Resources`)."""

    def __post_init__(self) -> None:
        check_run_layout(self.name, self.train, self.resources)

    @property
    def grad_accum(self) -> int:
        """Micro-batches per worker per optimizer step."""
        return self.train.global_batch_size // (self.resources.workers * self.train.micro_batch_size)


def check_run_layout(name: str, train: TrainSection, resources: Resources) -> None:
    """What every Ray Train stage config (SFT, RL) needs: whole micro-batches on every worker, and a run
    name that is one folder."""
    per_step = resources.workers * train.micro_batch_size
    if train.global_batch_size % per_step:
        raise ConfigError(
            f"train.global_batch_size ({train.global_batch_size}) must be a multiple of "
            f"resources.workers x train.micro_batch_size ({resources.workers} x "
            f"{train.micro_batch_size} = {per_step}); e.g. set "
            f"train.global_batch_size={per_step * max(1, train.global_batch_size // per_step)}")
    if not name or "/" in name:
        raise ConfigError(f"name must be a non-empty folder name, got {name!r}")
