"""Where each stage reads and writes inside a run folder.

A run folder holds every artifact of one pipeline run; stages chain by sharing it, so nobody copies
paths between commands::

    <run>/data/items.parquet                 items (schema.ITEMS)
    <run>/data/interactions.parquet          interactions (schema.INTERACTIONS)
    <run>/data/samples_{train,valid,test}.parquet   samples (schema.SAMPLES)
    <run>/data/manifest.json                 counts, content hashes, the config
    <run>/embeddings/embeddings.parquet      item vectors (schema.EMBEDDINGS)
    <run>/sid/<method>/codes.parquet         SID codes (schema.CODES), index.json, report.json, usage.png
    <run>/sft/<name>/                        Ray Train run <name>: checkpoints, inputs/, and the stage's
                                             model/ (final HF checkpoint), loss.png, history.json, stage.json
    <run>/rl/<name>/                         GRPO run <name>: checkpoints, model/, curves.png, stage.json
    <run>/eval/<name>/<split>/               metrics.json, metrics.md, predictions.parquet
    <run>/baseline/sasrec/                   SASRec runs, model/, item_embeddings.parquet, metrics
    <run>/toy/                               toy recommender runs and sweeps
    <run>/report/                            the pipeline's side-by-side metrics table and plot

Every path of a run folder is built here; stages and tools ask :class:`RunPaths` instead of joining
folder names themselves. The run folder may be a URI (``s3://bucket/runs/demo``): ``RunPaths.root`` is
then the driver's local workspace for it and ``RunPaths.storage`` moves files between the two
(:mod:`ray_rec.storage`).

The Parquet artifacts are read through :mod:`ray_rec.artifacts`, which checks them against these schemas.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ray_rec.storage import RunStorage, storage_of

SPLITS = ("train", "valid", "test")
DEFAULT_RUN = "runs/default"  # the run folder every command uses when none is given
DEFAULT_SFT = "sft"           # the SFT run name evaluation and GRPO read from when none is given


@dataclass(frozen=True)
class RunPaths:
    """All artifact locations of one run folder."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", self.storage.local.resolve())

    @property
    def storage(self) -> RunStorage:
        """Where the run lives and how its files reach the local ``root`` (:mod:`ray_rec.storage`)."""
        return storage_of(self.root)

    @property
    def uri(self) -> str:
        """The run folder as the user names it: an absolute path or a URI."""
        return self.storage.uri

    def location(self, path: str | Path) -> str:
        """Where ``path`` (under ``root``) lives, for messages: its URI on remote storage, else the path."""
        return self.storage.uri_of(path)

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
    def sft_root(self) -> Path:
        """Ray Train storage of every SFT run (one folder per run name below it)."""
        return self.root / "sft"

    def sft_dir(self, name: str = DEFAULT_SFT) -> Path:
        """SFT run ``name``: Ray Train checkpoints, inputs/, model/, loss.png, history.json, stage.json."""
        return self.sft_root / name

    def sft_model(self, name: str = DEFAULT_SFT) -> Path:
        """The final SFT model of run ``name`` in Hugging Face format (config, weights, tokenizer)."""
        return self.sft_dir(name) / "model"

    def sft_inputs(self, name: str = DEFAULT_SFT) -> Path:
        """The tokenizer (and anything else a resumed run must rebuild identically) of SFT run ``name``."""
        return self.sft_dir(name) / "inputs"

    @property
    def rl_root(self) -> Path:
        """Ray Train storage of every GRPO run."""
        return self.root / "rl"

    def rl_dir(self, name: str) -> Path:
        """GRPO run ``name``: checkpoints, model/, curves.png, history.json, stage.json."""
        return self.rl_root / name

    def rl_model(self, name: str) -> Path:
        """The exported best GRPO model of run ``name``."""
        return self.rl_dir(name) / "model"

    def eval_dir(self, name: str, split: str | None = None) -> Path:
        """Evaluation ``name`` (on ``split``, when given): metrics.json, metrics.md, predictions.parquet."""
        base = self.root / "eval" / name
        if split is None:
            return base
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
        return base / split

    @property
    def sasrec_dir(self) -> Path:
        return self.root / "baseline" / "sasrec"

    @property
    def sasrec_model(self) -> Path:
        """The trained SASRec (weights and its config), read by distillation and the CF reward."""
        return self.sasrec_dir / "model"

    @property
    def sasrec_embeddings(self) -> Path:
        """The trained SASRec's item embeddings (schema EMBEDDINGS): input for collaborative SIDs."""
        return self.sasrec_dir / "item_embeddings.parquet"

    @property
    def report_dir(self) -> Path:
        """The pipeline's report: metrics.json, metrics.md, metrics.png."""
        return self.root / "report"

    @property
    def toy_dir(self) -> Path:
        return self.root / "toy"

    def toy_train_dir(self, name: str) -> Path:
        """Ray Train run ``name`` of the toy model: checkpoints, metrics.json, history.json, curves.png."""
        return self.toy_dir / "train" / name

    def toy_tune_dir(self, name: str) -> Path:
        """Tune sweep ``name``: trials, best_config.yaml, results.csv/.md, trials.png."""
        return self.toy_dir / "tune" / name
