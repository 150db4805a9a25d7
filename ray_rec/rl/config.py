"""RLConfig: the GRPO stage's one config. The ``train`` and ``resources`` sections are the SFT stage's
(:mod:`ray_rec.trainer.config`: same backends, schedule, checkpoints and Ray Train workers); ``grpo``
holds what is new: rollouts, rewards, the KL weight and the validation ranking that picks the best
checkpoint.

Batch sizes count users (prompts): each user brings ``grpo.group_size`` rollouts. Loaded from
``jobs/configs/rl.yaml`` (or ``rl_smoke.yaml``) plus ``--set section.key=value``::

    cfg = load_config(RLConfig, "jobs/configs/rl_smoke.yaml", ["grpo.beta=0.01"])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ray_rec.config import ConfigError, option
from ray_rec.paths import DEFAULT_RUN, DEFAULT_SFT
from ray_rec.resources import Resources
from ray_rec.trainer.config import RayTrainStage, TrainSection


@dataclass(frozen=True)
class GRPOSection:
    """Rollouts, rewards and validation."""

    group_size: int = option(16, help="rollouts per user: the G best SIDs of constrained beam search (MiniOneRec: 16)")
    reward: Literal["rule", "ranking"] = option("ranking", help="rule: 1 for the right item, 0 otherwise; ranking: "
                                                "also penalise wrong items ranked in a group that found the right one "
                                                "(ray_rec/rl/rewards.py)")
    cf_weight: float = option(0.0, help="weight of a collaborative-filtering reward, our SASRec's probability of the "
                                        "rolled-out item (needs <run>/baseline/sasrec/model; 0 = off)")
    scale_rewards: Literal["group", "batch", "none"] = option(
        "group", help="advantage scaling: group = divide by each group's reward std (GRPO), batch = by the micro-batch's "
                      "(cf_weight then weighs cf against hits), none = centre only (ray_rec/rl/rewards.py)")
    beta: float = option(0.04, help="weight of the KL penalty to the reference (SFT) model; 0 = no reference model")
    max_prompts: int = option(0, help="train on the first N training samples only (0 = all)")
    eval_users: int = option(512, help="valid samples ranked at every evaluation (0 = all)")
    eval_beams: int = option(20, help="beam width of the validation ranking")
    eval_k: int = option(10, help="K of the validation HR@K / NDCG@K; the best checkpoint has the highest NDCG@K")

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ConfigError(f"grpo.group_size must be >= 2 (advantages compare rollouts), got {self.group_size}")
        if self.beta < 0 or self.cf_weight < 0:
            raise ConfigError("grpo.beta and grpo.cf_weight must be >= 0")
        if self.max_prompts < 0 or self.eval_users < 0:
            raise ConfigError("grpo.max_prompts and grpo.eval_users must be >= 0 (0 = all)")
        if not 1 <= self.eval_k <= self.eval_beams:
            raise ConfigError(f"grpo.eval_k ({self.eval_k}) must lie in 1..grpo.eval_beams ({self.eval_beams})")


RL_TRAIN = TrainSection(lr=1e-4, min_lr_ratio=1.0, warmup_steps=5, global_batch_size=16, micro_batch_size=4,
                        epochs=1.0, eval_every=20, weight_decay=0.0, log_every=5)


@dataclass(frozen=True)
class RLConfig(RayTrainStage):
    """GRPO fine-tuning of an SFT model with constrained beam-search rollouts (``ray-rec rl``)."""

    run: str = option(DEFAULT_RUN, affects_result=False,
                      help="run folder holding data/, sid/<method>/ and sft/<sft_name>/model; writes rl/<name>/")
    name: str = option("grpo", help="Ray Train run name under <run>/rl/; the same name resumes that run")
    model: str = option("", help="Hugging Face folder of the starting policy; empty = <run>/sft/<sft_name>/model")
    sft_name: str = option(DEFAULT_SFT, help="the SFT run whose model is the starting policy when model is empty")
    sid_method: str = option("", help="which <run>/sid/<method>/codes.parquet; empty = the one the model was trained on")
    grpo: GRPOSection = option(GRPOSection(), help="rollouts, rewards and validation")
    train: TrainSection = option(RL_TRAIN, help="optimisation (global_batch_size and micro_batch_size count users)")
    resources: Resources = option(Resources(), affects_result=False, help="Ray Train workers and what each gets")
