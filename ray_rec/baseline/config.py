"""SASRecConfig: the one config of the SASRec baseline stage (``ray-rec baseline sasrec``).

Loaded from ``jobs/configs/sasrec.yaml`` with ``--set key=value`` overrides; cross-field rules are
checked in ``__post_init__`` so a bad value fails before Ray starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ray_rec.config import ConfigError, option
from ray_rec.paths import DEFAULT_RUN
from ray_rec.resources import Resources


@dataclass(frozen=True)
class SASRecConfig:
    run: str = option(DEFAULT_RUN, affects_result=False, help="run folder: reads data/samples_*.parquet and data/items.parquet, "
                                                "writes baseline/sasrec/")
    # model
    hidden: int = option(64, help="embedding and hidden width d")
    blocks: int = option(2, help="number of causal self-attention blocks")
    heads: int = option(2, help="attention heads per block (must divide hidden)")
    dropout: float = option(0.5, help="dropout on embeddings, attention and feed-forward (SASRec's paper uses 0.2-0.5)")
    max_len: int = option(50, help="longest history the model reads; older items are cut off")
    # training
    objective: Literal["all", "last"] = option(
        "all", help="'all': cross-entropy at every position of each user's training sequence (rebuilt from the "
                    "samples, cut into windows of max_len + 1 items, every target labelled once); 'last': one row "
                    "per sample, its target only")
    lr: float = option(1e-3, help="Adam learning rate")
    weight_decay: float = option(0.0, help="AdamW weight decay")
    batch_size: int = option(128, help="global batch size (split evenly over the workers)")
    max_epochs: int = option(200, help="upper bound on training epochs")
    patience: int = option(10, help="stop after this many evaluations without a better valid NDCG@10")
    select: Literal["best_valid", "last"] = option(
        "best_valid", help="weights to keep: those of the best valid NDCG@10, or the last epoch's "
                           "(use 'last' when valid rows are part of the training data)")
    time_limit_s: float = option(0.0, help="stop training after this many seconds (0 = no limit)")
    eval_batch_size: int = option(512, help="users scored per forward pass during evaluation")
    ks: list[int] = option([1, 3, 5, 10, 20, 50], help="cut-offs K of HR@K and NDCG@K")
    seed: int = option(0, help="seed of initialisation, dropout and shuffling")
    resources: Resources = option(Resources(), affects_result=False,
                                  help="Ray Train workers (DDP over gloo on CPU, NCCL on GPU) and what each gets")
    name: str = option("", affects_result=False, help="Ray Train run name (empty: a fresh unique name; a repeated name resumes)")
    force: bool = option(False, affects_result=False, help="retrain even if baseline/sasrec holds a finished run with this config")

    def __post_init__(self) -> None:
        positive = {"hidden": self.hidden, "blocks": self.blocks, "heads": self.heads, "max_len": self.max_len,
                    "batch_size": self.batch_size, "max_epochs": self.max_epochs,
                    "eval_batch_size": self.eval_batch_size}
        for key, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{key} must be positive, got {value}")
        if self.hidden % self.heads:
            raise ConfigError(f"heads={self.heads} must divide hidden={self.hidden}; "
                              f"pick e.g. heads=2 with an even hidden size")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.patience < 1:
            raise ConfigError(f"patience must be at least 1 evaluation, got {self.patience}; "
                              f"use select=last with max_epochs=N for a fixed number of epochs")
        if self.batch_size < self.resources.workers:
            raise ConfigError(f"batch_size={self.batch_size} is smaller than resources.workers={self.resources.workers}; "
                              f"every worker needs at least one sample per step")
        if not self.ks or min(self.ks) <= 0 or 10 not in self.ks:
            raise ConfigError(f"ks must be positive and include 10 (early stopping watches NDCG@10), got {self.ks}")
        if self.time_limit_s < 0:
            raise ConfigError("time_limit_s must be >= 0")
