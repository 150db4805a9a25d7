"""PipelineConfig: one section per stage, each the stage's own config; ``run`` is shared.

Load it like any stage config::

    ray-rec pipeline run --config jobs/configs/pipeline.yaml --set sft.train.epochs=2

Every section keeps the stage's defaults unless set; the pipeline overwrites each section's run folder
with ``run`` so the stages chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ray_rec.baseline.config import SASRecConfig
from ray_rec.config import ConfigError, option
from ray_rec.data.config import DataConfig, EmbedConfig
from ray_rec.eval.config import EvalConfig
from ray_rec.paths import RunPaths
from ray_rec.rl.config import RLConfig
from ray_rec.sid.config import SIDConfig
from ray_rec.train.config import SFTConfig


@dataclass(frozen=True)
class PipelineConfig:
    """The main job: every stage on one run folder, on a local Ray or the cluster at RAY_ADDRESS."""

    run: str = option("runs/default", help="run folder shared by every stage (each section's run key is overwritten with it)")
    num_cpus: int = option(4, help="logical CPUs of a local Ray (more than the cores lets Train workers and Data "
                                   "actors coexist on a small machine); ignored when RAY_ADDRESS is set")
    stages: list[str] = option(["data", "embed", "sid", "sft", "evaluate", "sasrec"],
                               help="stages to run, in this order (a subset skips the others); add rl after sft "
                                    "for GRPO, whose model is then evaluated like the SFT model")
    sid_input: Literal["text", "sasrec"] = option(
        "text", help="what the SID stage quantizes: text (the embed stage's vectors) or sasrec (the trained SASRec's "
                     "item embeddings, so co-bought items share SID prefixes; put sasrec before sid in stages)")
    data: DataConfig = option(DataConfig(), help="data stage (default: the synthetic catalogue)")
    embed: EmbedConfig = option(EmbedConfig(), help="item-text embedding stage")
    sid: SIDConfig = option(SIDConfig(), help="semantic-ID stage")
    sft: SFTConfig = option(SFTConfig(), help="SFT stage")
    evaluate: EvalConfig = option(EvalConfig(), help="constrained-beam evaluation of the SFT model (and of the RL model)")
    rl: RLConfig = option(RLConfig(), help="GRPO stage, starting from the SFT model")
    sasrec: SASRecConfig = option(SASRecConfig(), help="the SASRec baseline")

    def __post_init__(self) -> None:
        valid = ["data", "embed", "sid", "sft", "evaluate", "sasrec", "rl"]
        unknown = [s for s in self.stages if s not in valid]
        if unknown:
            raise ConfigError(f"stages: unknown stage(s) {unknown}; valid stages: {', '.join(valid)}")
        if "rl" in self.stages and "sft" in self.stages and self.stages.index("rl") < self.stages.index("sft"):
            raise ConfigError("stages: rl starts from the SFT model; list it after sft, e.g. [..., sft, rl, evaluate]")
        if self.sid_input == "sasrec" and "sid" in self.stages:
            if "sasrec" not in self.stages or self.stages.index("sasrec") > self.stages.index("sid"):
                raise ConfigError("sid_input=sasrec quantizes the SASRec's item embeddings: list sasrec before sid "
                                  "in stages, e.g. [data, sasrec, sid, sft, evaluate]")
            if self.sid.embeddings and Path(self.sid.embeddings) != RunPaths(self.run).sasrec_embeddings:
                raise ConfigError("sid_input=sasrec sets sid.embeddings itself; leave sid.embeddings empty")
        if self.sft.distill.reads_run_sasrec and {"sasrec", "sft"} <= set(self.stages) \
                and self.stages.index("sasrec") > self.stages.index("sft"):
            raise ConfigError("sft.distill.weight > 0 learns from the run's SASRec: list sasrec before sft in stages, "
                              "e.g. [data, embed, sid, sasrec, sft, evaluate]")
        if self.sft.sid_method != self.sid.out_name:
            raise ConfigError(f"sft.sid_method={self.sft.sid_method!r} but the SID stage writes sid/{self.sid.out_name}; "
                              f"set sft.sid_method={self.sid.out_name}")
