"""SFTConfig: the supervised fine-tuning stage's one config, in four sections.

* ``model``   which causal LM (a small random Qwen2 built here, or a local Hugging Face folder) and
  whether only the new SID token rows train;
* ``tasks``   MiniOneRec's task mix, one weight per task, and how prompts are cut;
* ``train``   optimisation: backend (DeepSpeed ZeRO-2 or DDP), global batch, schedule, evaluation,
  early stopping, checkpoints;
* ``resources`` Ray Train workers (:class:`ray_rec.resources.Resources`, the same keys in every stage).

``model`` is :class:`ray_rec.lm.config.ModelSection` (every stage that builds or loads the LM reads it);
``train`` and the ``RayTrainStage`` checks are the Ray Train parts of :mod:`ray_rec.trainer.config`, shared with GRPO.
``tasks`` and ``distill`` are SFT's own and defined here.

Loaded from ``jobs/configs/sft.yaml`` (or ``sft_smoke.yaml``) with ``--set section.key=value``::

    cfg = load_config(SFTConfig, "jobs/configs/sft_smoke.yaml", ["train.lr=3e-4"])
"""

from __future__ import annotations

from dataclasses import dataclass

from ray_rec.config import ConfigError, option
from ray_rec.lm.config import ModelSection
from ray_rec.paths import DEFAULT_RUN, DEFAULT_SFT
from ray_rec.resources import Resources
from ray_rec.sid.config import SIDConfig
from ray_rec.trainer.config import RayTrainStage, TrainSection

TASKS = ("sid_next", "sid_seq", "sid_to_title", "title_to_sid", "sid_history_title",
         "title_history_title", "title_history_sid")


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
class SFTConfig(RayTrainStage):
    """Supervised fine-tuning of the generative recommender (``ray-rec sft``)."""

    run: str = option(DEFAULT_RUN, affects_result=False,
                      help="run folder holding data/ and sid/<method>/; writes sft/<name>/")
    name: str = option(DEFAULT_SFT, help="Ray Train run name: writes <run>/sft/<name>/ (checkpoints, model/, loss.png); "
                                          "the same name resumes that run")
    sid_method: str = option(SIDConfig().out_name, help="which <run>/sid/<method>/codes.parquet gives the items' "
                                                        "SIDs (default: where `ray-rec sid build` writes by default)")
    model: ModelSection = option(ModelSection(), help="the causal LM and tokenizer")
    tasks: TasksSection = option(TasksSection(), help="the SFT task mix")
    distill: DistillSection = option(DistillSection(), help="soft targets from our SASRec (off by default)")
    train: TrainSection = option(TrainSection(), help="optimisation, evaluation and checkpoints")
    resources: Resources = option(Resources(), affects_result=False,
                                  help="Ray Train workers (same global batches whatever their number)")
