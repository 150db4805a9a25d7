"""EvalConfig: what ``ray-rec evaluate`` scores, with which beams, on how many Ray actors.

Loaded like every stage config (``jobs/configs/evaluate.yaml`` plus ``--set key=value``)::

    ray-rec evaluate --run runs/demo --split test --set resources.workers=4
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ray_rec.config import ConfigError, option
from ray_rec.paths import DEFAULT_RUN, DEFAULT_SFT
from ray_rec.resources import Resources

ALL_KS = [1, 3, 5, 10, 20, 50]


@dataclass(frozen=True)
class EvalConfig:
    """Constrained beam-search evaluation of a generative recommender on one split."""

    run: str = option(DEFAULT_RUN, affects_result=False, help="run folder holding data/, sid/<method>/ and sft/<sft_name>/model")
    checkpoint: str = option("", help="Hugging Face model folder to evaluate; empty = <run>/sft/<sft_name>/model")
    sft_name: str = option(DEFAULT_SFT, help="the SFT run whose model is scored when checkpoint is empty")
    sid_method: str = option("", help="which <run>/sid/<method>/codes.parquet gives the items' SIDs; empty = the "
                                      "method the checkpoint was trained with (its ray_rec_sft.json)")
    split: Literal["train", "valid", "test"] = option("test", help="samples_<split>.parquet to score")
    name: str = option(DEFAULT_SFT, help="results go to <run>/eval/<name>/<split>/")
    num_beams: int = option(50, help="beam width of the constrained beam search (MiniOneRec uses 50)")
    top_k: int = option(50, help="items kept per user (at most num_beams); the largest K of the metrics")
    ks: list[int] = option(ALL_KS, help="cut-offs K of HR@K and NDCG@K")
    batch_size: int = option(16, help="users per beam-search call and per Ray Data batch")
    resources: Resources = option(Resources(), affects_result=False,
                                  help="beam-search actors, each loading the checkpoint once; use_gpu = one GPU each")
    max_users: int = option(0, help="score only the first N samples (0 = all); for smoke runs")
    max_history: int = option(-1, help="newest history items put in a prompt: -1 = as the SFT run recorded "
                                       "(its ray_rec_sft.json), 0 = whole histories")

    def __post_init__(self) -> None:
        if self.num_beams < 1:
            raise ConfigError(f"num_beams must be >= 1, got {self.num_beams}")
        if not 1 <= self.top_k <= self.num_beams:
            raise ConfigError(f"top_k={self.top_k} must lie in 1..num_beams ({self.num_beams}): "
                              "each beam yields one SID; raise num_beams or lower top_k")
        if not self.ks or min(self.ks) < 1 or max(self.ks) > self.top_k:
            raise ConfigError(f"ks={list(self.ks)} must be positive and at most top_k ({self.top_k}); "
                              "raise top_k (and num_beams) or drop the larger K")
        for name in ("batch_size",):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_history < -1:
            raise ConfigError(f"max_history must be -1 (as trained), 0 (whole) or positive, got {self.max_history}")
        if self.max_users < 0:
            raise ConfigError(f"max_users must be >= 0 (0 = all), got {self.max_users}")
