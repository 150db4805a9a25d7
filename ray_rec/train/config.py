"""SFTConfig: the supervised fine-tuning stage's one config, in four sections.

* ``model``   which causal LM (a small random Qwen2 built here, or a local Hugging Face folder) and
  whether only the new SID token rows train;
* ``tasks``   MiniOneRec's task mix, one weight per task, and how prompts are cut;
* ``train``   optimisation: backend (DeepSpeed ZeRO-2 or DDP), global batch, schedule, evaluation,
  early stopping, checkpoints;
* ``scaling`` Ray Train workers and failure handling.

Loaded from ``jobs/configs/sft.yaml`` (or ``sft_smoke.yaml``) with ``--set section.key=value``::

    cfg = load_config(SFTConfig, "jobs/configs/sft_smoke.yaml", ["train.lr=3e-4"])
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from ray_rec.config import ConfigError, option
from ray_rec.sid.config import SIDConfig

TASKS = ("sid_next", "sid_seq", "sid_to_title", "title_to_sid", "sid_history_title",
         "title_history_title", "title_history_sid")


@dataclass(frozen=True)
class ModelSection:
    """The causal LM and its tokenizer."""

    path: str = option("", help="local Hugging Face causal-LM folder (e.g. a Qwen2.5 checkpoint); empty = build a "
                                "small random Qwen2 from the sizes below with a BPE tokenizer trained on the catalogue")
    hidden_size: int = option(128, help="built model: hidden width")
    num_layers: int = option(2, help="built model: transformer blocks")
    num_heads: int = option(4, help="built model: attention heads (must divide hidden_size)")
    num_kv_heads: int = option(2, help="built model: key/value heads (must divide num_heads)")
    intermediate_size: int = option(0, help="built model: MLP width; 0 = 4 x hidden_size")
    max_positions: int = option(1024, help="built model: longest sequence in tokens")
    tie_embeddings: bool = option(True, help="built model: share the input embedding and the output head")
    bpe_vocab_size: int = option(2000, help="built model: BPE vocabulary size trained on the catalogue text "
                                            "(before the SID tokens are added)")
    freeze_base: bool = option(False, help="train only the new SID token rows of the embedding and output head; "
                                           "every other parameter stays as loaded")
    dropout: float = option(0.0, help="training-time dropout on the token embeddings and on every block's attention "
                                      "and MLP output (and, for a built model, on the attention weights); "
                                      "0.1-0.3 keeps a small model from overfitting a small catalogue")

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "max_positions", "bpe_vocab_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must lie in [0, 1), got {self.dropout}")
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ConfigError(f"model.num_heads ({self.num_heads}) must divide model.hidden_size "
                              f"({self.hidden_size}) and model.num_kv_heads ({self.num_kv_heads}) must divide "
                              "num_heads; pick e.g. hidden_size=128, num_heads=4, num_kv_heads=2")


@dataclass(frozen=True)
class TasksSection:
    """MiniOneRec's SFT task mix. A weight w uses each task's examples w times per epoch (0.5 = a random
    half, 2 = twice); 0 switches the task off."""

    sid_next: float = option(1.0, help="main task: SID history -> next SID, one example per training sample")
    sid_seq: float = option(0.0, help="main task on whole user sequences: every item's SID after the first is a "
                                      "target in one pass (far fewer tokens than sid_next on a CPU)")
    sid_to_title: float = option(0.0, help="item SID -> its title, one example per item")
    title_to_sid: float = option(0.0, help="item title -> its SID, one example per item")
    sid_history_title: float = option(0.0, help="SID history -> next item's title")
    title_history_title: float = option(0.0, help="title history -> next item's title")
    title_history_sid: float = option(0.0, help="title history -> next item's SID")
    max_history: int = option(10, help="most recent history items put in a prompt")
    max_title_words: int = option(20, help="titles are cut to this many words")
    seq_max_items: int = option(50, help="sid_seq: user sequences are cut into windows of this many items")
    max_length: int = option(512, help="examples longer than this many tokens are dropped (and counted)")

    def weights(self) -> dict[str, float]:
        """Task name -> weight, in the order of TASKS."""
        return {name: getattr(self, name) for name in TASKS}

    def __post_init__(self) -> None:
        weights = self.weights()
        bad = [k for k, w in weights.items() if w < 0]
        if bad:
            raise ConfigError(f"task weight(s) {', '.join('tasks.' + k for k in bad)} must be >= 0")
        if not any(w > 0 for w in weights.values()):
            raise ConfigError("the task mix is empty: every task weight is 0; set at least one, "
                              "e.g. --set tasks.sid_next=1 (tasks: " + ", ".join(TASKS) + ")")
        for name in ("max_history", "max_title_words", "seq_max_items", "max_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"tasks.{name} must be >= 1, got {getattr(self, name)}")
        if self.seq_max_items < 2:
            raise ConfigError("tasks.seq_max_items must be >= 2 (a window needs a history and a target)")


@dataclass(frozen=True)
class DistillSection:
    """Knowledge distillation from our SASRec (ray_rec/train/distill.py): at every SID token of a main-task
    target the loss mixes the true code with SASRec's distribution over that level's codes, given the
    target's true codes before it."""

    weight: float = option(0.0, help="share of the teacher's soft targets in the loss at SID tokens "
                                     "(0 = off, 1 = the teacher alone)")
    temperature: float = option(1.0, help="softmax temperature of the teacher's item scores (> 1 = softer)")
    teacher: str = option("", help="SASRec model folder; empty = <run>/baseline/sasrec/model")

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight <= 1.0:
            raise ConfigError(f"distill.weight must lie in [0, 1], got {self.weight}")
        if self.temperature <= 0:
            raise ConfigError(f"distill.temperature must be > 0, got {self.temperature}")

    @property
    def reads_run_sasrec(self) -> bool:
        """On, with the teacher at <run>/baseline/sasrec/model (the SASRec stage must come first)."""
        return self.weight > 0 and not self.teacher


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
    crash_at_step: int = option(-1, help="TESTING ONLY: worker crash_rank exits at this step, once per run "
                                         "(a marker file remembers it); -1 = off")
    crash_rank: int = option(1, help="TESTING ONLY: which worker crash_at_step kills")

    def __post_init__(self) -> None:
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


@dataclass(frozen=True)
class ScalingSection:
    """Ray Train workers."""

    num_workers: int = option(2, help="Ray Train workers (data-parallel ranks)")
    use_gpu: bool = option(False, help="one GPU per worker (NCCL, bf16 under precision=auto); false = CPU, gloo, fp32")
    cpus_per_worker: float = option(1.0, help="logical CPUs Ray reserves per worker")
    threads_per_worker: int = option(1, help="torch threads per worker (1 avoids thrashing on small machines)")
    max_failures: int = option(2, help="worker-group failures survived by restarting from the latest checkpoint")

    def __post_init__(self) -> None:
        if self.num_workers < 1 or self.threads_per_worker < 1 or self.cpus_per_worker <= 0:
            raise ConfigError("scaling.num_workers, scaling.threads_per_worker and scaling.cpus_per_worker "
                              "must be positive")
        if self.max_failures < -1:
            raise ConfigError("scaling.max_failures must be >= 0, or -1 for unlimited")


class RayTrainStage:
    """What the Ray Train stage configs (SFTConfig, RLConfig) share; they have ``name``, ``train``
    (TrainSection) and ``scaling`` (ScalingSection)."""

    def __post_init__(self) -> None:
        check_run_layout(self.name, self.train, self.scaling)

    @property
    def grad_accum(self) -> int:
        """Micro-batches per worker per optimizer step."""
        return self.train.global_batch_size // (self.scaling.num_workers * self.train.micro_batch_size)


@dataclass(frozen=True)
class SFTConfig(RayTrainStage):
    """Supervised fine-tuning of the generative recommender (``ray-rec sft``)."""

    run: str = option("runs/default", help="run folder holding data/ and sid/<method>/; writes sft/")
    name: str = option("sft", help="Ray Train run name under <run>/sft/; the same name resumes that run")
    sid_method: str = option(SIDConfig().out_name, help="which <run>/sid/<method>/codes.parquet gives the items' "
                                                        "SIDs (default: where `ray-rec sid build` writes by default)")
    model: ModelSection = option(ModelSection(), help="the causal LM and tokenizer")
    tasks: TasksSection = option(TasksSection(), help="the SFT task mix")
    distill: DistillSection = option(DistillSection(), help="soft targets from our SASRec (off by default)")
    train: TrainSection = option(TrainSection(), help="optimisation, evaluation and checkpoints")
    scaling: ScalingSection = option(ScalingSection(), help="Ray Train workers")

def check_run_layout(name: str, train: TrainSection, scaling: ScalingSection) -> None:
    """What every Ray Train stage config (SFT, RL) needs: whole micro-batches on every worker, and a run
    name that is one folder."""
    per_step = scaling.num_workers * train.micro_batch_size
    if train.global_batch_size % per_step:
        raise ConfigError(
            f"train.global_batch_size ({train.global_batch_size}) must be a multiple of "
            f"scaling.num_workers x train.micro_batch_size ({scaling.num_workers} x "
            f"{train.micro_batch_size} = {per_step}); e.g. set "
            f"train.global_batch_size={per_step * max(1, train.global_batch_size // per_step)}")
    if not name or "/" in name:
        raise ConfigError(f"name must be a non-empty folder name, got {name!r}")


def section_names() -> list[str]:
    """Names of SFTConfig's fields (for help texts)."""
    return [f.name for f in fields(SFTConfig)]
