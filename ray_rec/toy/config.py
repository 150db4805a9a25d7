"""The toy recommender's one config: data, model, optimisation, evaluation and the Tune sweep.

``ray-rec toy train`` and ``ray-rec toy tune`` read the same YAML (``jobs/configs/toy.yaml``); the
sweep takes its fixed settings from the ``data``/``model``/``train`` sections and samples the
ranges of the ``tune`` section. Cross-field rules are checked here so a bad combination fails
before Ray starts::

    cfg = load_config(ToyConfig, "jobs/configs/toy.yaml", ["train.lr=3e-4", "model.pooling=last"])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ray_rec.config import ConfigError, option
from ray_rec.metrics import DEFAULT_KS
from ray_rec.paths import DEFAULT_RUN
from ray_rec.resources import Resources


@dataclass(frozen=True)
class ToyDataConfig:
    """Where the user sequences come from and how histories are cut."""

    dataset: Literal["toy", "jsonl"] = option("toy", help="'toy': the built-in learnable generator; 'jsonl': read train_path")
    train_path: str | None = option(None, help="JSONL file, one user per line: {\"user_id\": 7, \"items\": [3, 9, 4]} (dataset=jsonl)")
    num_items: int = option(200, help="catalogue size; item ids are 1..num_items, 0 is padding")
    num_users: int = option(1000, help="users the toy generator simulates (dataset=toy)")
    max_len: int = option(50, help="histories keep their last max_len items and are padded to this length")
    min_seq_len: int = option(5, help="toy generator: shortest sequence (>= 3: one train, one valid, one test target)")
    max_seq_len: int = option(50, help="toy generator: longest sequence (independent of max_len, so sweeping max_len keeps the data)")
    group_size: int = option(10, help="toy generator: items per interest group; a user mostly browses one group")
    follow_prob: float = option(0.6, help="toy generator: chance the next item is the successor of the last one in its group")
    noise_prob: float = option(0.1, help="toy generator: chance the next item is uniform over the whole catalogue")

    def __post_init__(self) -> None:
        if self.dataset == "jsonl" and not self.train_path:
            raise ConfigError("data.dataset=jsonl needs data.train_path (--train-path FILE)")
        if self.num_items < 2:
            raise ConfigError(f"data.num_items must be >= 2, got {self.num_items}")
        if self.num_users < 1:
            raise ConfigError(f"data.num_users must be >= 1, got {self.num_users}")
        if self.max_len < 1:
            raise ConfigError(f"data.max_len must be >= 1, got {self.max_len}")
        if not 3 <= self.min_seq_len <= self.max_seq_len:
            raise ConfigError(f"data.min_seq_len must be >= 3 (train, valid and test targets) and <= data.max_seq_len, "
                              f"got {self.min_seq_len} and {self.max_seq_len}")
        if not 1 <= self.group_size <= self.num_items:
            raise ConfigError(f"data.group_size must lie in 1..num_items ({self.num_items}), got {self.group_size}")
        if not (0 <= self.follow_prob <= 1 and 0 <= self.noise_prob <= 1 and self.follow_prob + self.noise_prob <= 1):
            raise ConfigError("data.follow_prob and data.noise_prob must lie in [0, 1] and sum to at most 1")


@dataclass(frozen=True)
class ToyModelConfig:
    """Item embedding -> masked pooling -> linear layer over all items."""

    embed_dim: int = option(64, help="item embedding size")
    pooling: Literal["mean", "last"] = option("mean", help="'mean' over the history, or the 'last' position only")
    dropout: float = option(0.1, help="dropout on the pooled history vector")

    def __post_init__(self) -> None:
        if self.embed_dim < 1:
            raise ConfigError(f"model.embed_dim must be >= 1, got {self.embed_dim}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.dropout must lie in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class ToyOptimConfig:
    """The training loop: AdamW, accumulation, clipping, AMP, checkpoint cadence."""

    epochs: int = option(5, help="passes over the training samples")
    batch_size: int = option(256, help="samples per micro-batch on each worker")
    grad_accum: int = option(1, help="micro-batches summed before each optimizer step")
    lr: float = option(3e-3, help="AdamW learning rate (constant, so a resumed run matches an uninterrupted one)")
    weight_decay: float = option(0.0, help="AdamW weight decay")
    grad_clip: float = option(1.0, help="clip the global gradient norm to this value; 0 disables clipping")
    amp: bool = option(False, help="mixed precision (CUDA only; CPU always trains in fp32)")
    amp_dtype: Literal["bf16", "fp16"] = option("bf16", help="AMP dtype; fp16 also uses a GradScaler")
    eval_batch_size: int = option(1024, help="samples per evaluation batch")
    checkpoint_every: int = option(1, help="save a checkpoint every N epochs (the last epoch is always saved)")
    num_to_keep: int = option(2, help="checkpoints kept per run (the newest ones)")

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "grad_accum", "eval_batch_size", "checkpoint_every", "num_to_keep"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        if self.grad_clip < 0:
            raise ConfigError(f"train.grad_clip must be >= 0 (0 disables clipping), got {self.grad_clip}")


@dataclass(frozen=True)
class ToyTuneConfig:
    """The Ray Tune sweep: search space, ASHA early stopping on ndcg@10, resources."""

    name: str = option("toy-sweep", help="sweep name; results go to <run>/toy/tune/<name>/")
    num_samples: int = option(8, help="trials sampled from the search space")
    max_concurrent: int = option(2, help="trials running at once (each uses cpus_per_trial)")
    cpus_per_trial: float = option(1.0, help="logical CPUs reserved per trial")
    grace_period: int = option(1, help="ASHA: epochs every trial runs before it may be stopped")
    reduction_factor: int = option(2, help="ASHA: keep the best 1/reduction_factor of trials at each rung")
    lr: list[float] = option([1e-3, 3e-2], help="learning-rate range [low, high], sampled log-uniformly")
    embed_dim: list[int] = option([32, 64, 128], help="embedding sizes to choose from")
    max_len: list[int] = option([20, 50], help="history lengths to choose from")
    batch_size: list[int] = option([128, 256], help="batch sizes to choose from")
    pooling: list[str] = option(["mean", "last"], help="pooling modes to choose from")

    def __post_init__(self) -> None:
        if self.num_samples < 1 or self.max_concurrent < 1:
            raise ConfigError("tune.num_samples and tune.max_concurrent must be >= 1")
        if self.cpus_per_trial <= 0:
            raise ConfigError(f"tune.cpus_per_trial must be > 0, got {self.cpus_per_trial}")
        if self.grace_period < 1 or self.reduction_factor < 2:
            raise ConfigError("tune.grace_period must be >= 1 and tune.reduction_factor >= 2")
        if len(self.lr) != 2 or not 0 < self.lr[0] <= self.lr[1]:
            raise ConfigError(f"tune.lr must be [low, high] with 0 < low <= high, got {self.lr}")
        for name in ("embed_dim", "max_len", "batch_size", "pooling"):
            if not getattr(self, name):
                raise ConfigError(f"tune.{name} must list at least one value")
        bad = sorted(set(self.pooling) - {"mean", "last"})
        if bad:
            raise ConfigError(f"tune.pooling: {bad} are not pooling modes; use 'mean' and/or 'last'")
        if min(self.embed_dim) < 1 or min(self.max_len) < 1 or min(self.batch_size) < 1:
            raise ConfigError("tune.embed_dim, tune.max_len and tune.batch_size values must be >= 1")


@dataclass(frozen=True)
class ToyConfig:
    """Everything ``ray-rec toy train`` and ``ray-rec toy tune`` need."""

    run: str = option(DEFAULT_RUN, affects_result=False, help="run folder; toy outputs go to <run>/toy/")
    name: str = option("toy", help="Ray Train run name; starting a run with the same name resumes it")
    seed: int = option(0, help="seed for data generation, initialisation, shuffling and dropout")
    data: ToyDataConfig = option(ToyDataConfig(), help="data section")
    model: ToyModelConfig = option(ToyModelConfig(), help="model section")
    train: ToyOptimConfig = option(ToyOptimConfig(), help="optimisation section")
    ks: list[int] = option(list(DEFAULT_KS), help="cut-offs K for HR@K and NDCG@K")
    tune: ToyTuneConfig = option(ToyTuneConfig(), help="Ray Tune sweep section (ray-rec toy tune)")
    resources: Resources = option(Resources(), affects_result=False,
                                  help="Ray Train workers (DDP over gloo on CPU, NCCL with use_gpu: one GPU each)")

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ConfigError(f"name must be a non-empty folder name without '/', got {self.name!r}")
        if self.train.amp and not self.resources.use_gpu:
            raise ConfigError("train.amp needs resources.use_gpu=true (AMP is CUDA-only; CPU trains in fp32): "
                              "drop --amp or pass --use-gpu")
        if not self.ks or min(self.ks) < 1:
            raise ConfigError(f"ks must be positive cut-offs such as [5, 10, 20], got {self.ks}")
        if 10 not in self.ks:
            raise ConfigError(f"ks must include 10 (the sweep and reports use ndcg@10), got {self.ks}")
