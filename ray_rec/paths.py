"""Where each stage reads and writes inside a run folder.

A run folder holds every artifact of one pipeline run; stages chain by sharing it, so nobody copies
paths between commands::

    <run>/data/items.parquet                 items (schema.ITEMS)
    <run>/data/interactions.parquet          interactions (schema.INTERACTIONS)
    <run>/data/samples_{train,valid,test}.parquet   samples (schema.SAMPLES)
    <run>/data/manifest.json                 counts, content hashes, the config
    <run>/embeddings/embeddings.parquet      item vectors (schema.EMBEDDINGS)
    <run>/sid/<method>/codes.parquet         SID codes (schema.CODES), index.json, report.json, usage.png
    <run>/sft/                               Ray Train storage; sft/model is the final HF checkpoint
    <run>/rl/                                GRPO runs
    <run>/eval/<name>/                       metrics.json, metrics.md
    <run>/baseline/sasrec/                   SASRec runs and metrics
    <run>/toy/                               toy recommender runs and sweeps

The Parquet artifacts are read through :mod:`ray_rec.artifacts`, which checks them against these schemas.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class RunPaths:
    """All artifact locations of one run folder."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())

    # data stage
    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def items(self) -> Path:
        return self.data_dir / "items.parquet"

    @property
    def interactions(self) -> Path:
        return self.data_dir / "interactions.parquet"

    def samples(self, split: str) -> Path:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
        return self.data_dir / f"samples_{split}.parquet"

    @property
    def data_manifest(self) -> Path:
        return self.data_dir / "manifest.json"

    # embedding stage
    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings" / "embeddings.parquet"

    # semantic IDs
    def sid_dir(self, method: str = "rqkmeans") -> Path:
        return self.root / "sid" / method

    def codes(self, method: str = "rqkmeans") -> Path:
        return self.sid_dir(method) / "codes.parquet"

    # training and evaluation
    @property
    def sft_dir(self) -> Path:
        return self.root / "sft"

    @property
    def sft_model(self) -> Path:
        """The final SFT model in Hugging Face format (config, weights, tokenizer)."""
        return self.sft_dir / "model"

    @property
    def rl_dir(self) -> Path:
        return self.root / "rl"

    def eval_dir(self, name: str) -> Path:
        return self.root / "eval" / name

    @property
    def sasrec_dir(self) -> Path:
        return self.root / "baseline" / "sasrec"

    @property
    def sasrec_embeddings(self) -> Path:
        """The trained SASRec's item embeddings (schema EMBEDDINGS): input for collaborative SIDs."""
        return self.sasrec_dir / "item_embeddings.parquet"

    @property
    def toy_dir(self) -> Path:
        return self.root / "toy"

    def toy_train_dir(self, name: str) -> Path:
        """Ray Train run ``name`` of the toy model: checkpoints, metrics.json, history.json, curves.png."""
        return self.toy_dir / "train" / name

    def toy_tune_dir(self, name: str) -> Path:
        """Tune sweep ``name``: trials, best_config.yaml, results.csv/.md, trials.png."""
        return self.toy_dir / "tune" / name
