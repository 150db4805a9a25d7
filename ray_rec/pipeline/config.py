"""PipelineConfig: one section per pipeline stage of the registry, each the stage's own config.

Load it like any stage config::

    ray-rec pipeline run --config jobs/configs/pipeline.yaml --set sft.train.epochs=2

The sections come from :mod:`ray_rec.stages` (a stage added there gets its section here), keep each
stage's defaults unless set, and are bound to the shared ``run`` folder by :meth:`PipelineConfig.bound`
so the stages chain. The order checks read each stage's ``upstream`` from the registry.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

from ray_rec.config import ConfigError, option
from ray_rec.paths import DEFAULT_RUN, RunPaths
from ray_rec.stages import PIPELINE_STAGES, STAGES


@dataclasses.dataclass(frozen=True)
class _PipelineBase:
    """The main job: every stage on one run folder, on a local Ray or the cluster at RAY_ADDRESS."""

    run: str = option(DEFAULT_RUN, help="run folder shared by every stage (each section's run key is overwritten with it)")
    num_cpus: int = option(4, help="logical CPUs of a local Ray (more than the cores lets Train workers and Data "
                                   "actors coexist on a small machine); ignored when RAY_ADDRESS is set")
    stages: list[str] = option(["data", "embed", "sid", "sft", "evaluate", "sasrec"],
                               help="stages to run, in this order (a subset skips the others); add rl after sft "
                                    "for GRPO, whose model is then evaluated like the SFT model")
    sid_input: Literal["text", "sasrec"] = option(
        "text", help="what the SID stage quantizes: text (the embed stage's vectors) or sasrec (the trained SASRec's "
                     "item embeddings, so co-bought items share SID prefixes; put sasrec before sid in stages)")

    def bound(self) -> dict[str, Any]:
        """Stage name -> its section, bound to this run: every ``run`` key set to the run folder, the
        SID input chosen by ``sid_input``, evaluation of this SFT run on the test split, GRPO from it."""
        run = RunPaths(self.run).uri  # an absolute path, or a URI kept as it is
        sections = {name: dataclasses.replace(getattr(self, name), run=run) for name in PIPELINE_STAGES}
        sid, sft, evaluate = sections["sid"], sections["sft"], sections["evaluate"]
        if self.sid_input == "sasrec":
            sections["sid"] = dataclasses.replace(sid, embeddings=str(RunPaths(run).sasrec_embeddings))
        sections["evaluate"] = dataclasses.replace(evaluate, split="test", sft_name=sft.name)
        sections["rl"] = dataclasses.replace(sections["rl"], model="", sft_name=sft.name)
        return sections

    def upstream(self) -> dict[str, tuple[str, ...]]:
        """Stage -> the stages whose outputs it reads, under this config (from the registry)."""
        return {name: STAGES[name].upstream(cfg) for name, cfg in self.bound().items()}

    def __post_init__(self) -> None:
        unknown = [s for s in self.stages if s not in PIPELINE_STAGES]
        if unknown:
            raise ConfigError(f"stages: unknown stage(s) {unknown}; valid stages: {', '.join(PIPELINE_STAGES)}")
        if self.sid_input == "sasrec" and self.sid.embeddings \
                and Path(self.sid.embeddings) != RunPaths(self.run).sasrec_embeddings:
            raise ConfigError("sid_input=sasrec sets sid.embeddings itself; leave sid.embeddings empty")
        order = {name: i for i, name in enumerate(self.stages)}
        for stage, ups in self.upstream().items():
            for up in ups:
                if stage in order and up in order and order[up] > order[stage]:
                    raise ConfigError(f"stages: {stage} reads what {up} writes; list {up} before {stage} "
                                      f"(stages are {list(self.stages)})")
        if self.sft.sid_method != self.sid.out_name:
            raise ConfigError(f"sft.sid_method={self.sft.sid_method!r} but the SID stage writes sid/{self.sid.out_name}; "
                              f"set sft.sid_method={self.sid.out_name}")


def _sections() -> list[tuple[str, type, Any]]:
    """One field per pipeline stage: its config class, defaulting to that class's defaults."""
    fields = []
    for name in PIPELINE_STAGES:
        record = STAGES[name]
        cls = record.config_class()
        fields.append((name, cls, option(cls(), help=f"the {name} stage ({record.command}): {record.doc}")))
    return fields


PipelineConfig = dataclasses.make_dataclass("PipelineConfig", _sections(), bases=(_PipelineBase,), frozen=True)
PipelineConfig.__module__ = __name__
PipelineConfig.__doc__ = _PipelineBase.__doc__
