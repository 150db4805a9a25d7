"""Configs of the data stage: :class:`DataConfig` (``ray-rec data prepare``) and :class:`EmbedConfig`
(``ray-rec data embed``).

Both are frozen dataclasses loaded from YAML with ``--set a.b=v`` overrides (see
``jobs/configs/data*.yaml``)::

    cfg = load_config(DataConfig, "jobs/configs/data_industrial.yaml", ["max_history=20"])
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ray_rec.config import ConfigError, option
from ray_rec.paths import DEFAULT_RUN
from ray_rec.resources import Resources

SOURCES = ("synthetic", "minionerec", "lcrec", "beauty", "amazon")

# The text an encoder sees for an item; fields: title, description, brand, categories.
DEFAULT_TEMPLATE = "{title}. Brand: {brand}. Categories: {categories}. {description}"

_MONTH = re.compile(r"^\d{4}-\d{2}(-\d{2})?$")


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and habits of the generated catalog (see :mod:`ray_rec.data.synthetic`)."""

    n_items: int = option(1000, help="number of items (100 .. 1,000,000)")
    n_users: int = option(2000, help="number of users")
    min_length: int = option(5, help="shortest user sequence")
    max_length: int = option(20, help="longest user sequence")
    p_complement: float = option(0.4, help="chance the next item complements the last one (e.g. drill -> drill bits)")
    p_repeat: float = option(0.1, help="chance the next item re-buys a consumable from the history")
    p_brand: float = option(0.6, help="chance a fresh pick comes from one of the user's preferred brands")
    seed: int = option(0, help="random seed: the same seed gives the same catalog and users")

    def __post_init__(self) -> None:
        if not 100 <= self.n_items <= 1_000_000:
            raise ConfigError(f"synthetic.n_items={self.n_items}: choose between 100 and 1,000,000")
        if self.n_users < 1:
            raise ConfigError("synthetic.n_users must be at least 1")
        if not 3 <= self.min_length <= self.max_length:
            raise ConfigError("synthetic: need 3 <= min_length <= max_length (leave-one-out needs 3 items)")
        if self.p_complement + self.p_repeat > 1 or min(self.p_complement, self.p_repeat, self.p_brand) < 0:
            raise ConfigError("synthetic: p_complement + p_repeat must be <= 1 and all probabilities >= 0")


@dataclass(frozen=True)
class AmazonConfig:
    """Raw Amazon 2018 review/metadata dumps and MiniOneRec's filtering rules."""

    reviews: str = option("", help="review JSON lines (reviewerID, asin, unixReviewTime), plain or .gz")
    meta: str = option("", help="metadata JSON lines (asin, title, description, brand, category), plain or .gz")
    window_start: str = option("2016-10", help="first day kept, YYYY-MM or YYYY-MM-DD (UTC, inclusive); empty = no limit")
    window_end: str = option("2018-11", help="last instant kept, YYYY-MM or YYYY-MM-DD at 00:00 UTC (inclusive); empty = no limit")
    user_k: int = option(5, help="k-core: keep users with at least this many interactions (iterated with item_k)")
    item_k: int = option(5, help="k-core: keep items with at least this many interactions")
    max_title_words: int = option(20, help="drop items whose cleaned title has more words than this")
    num_blocks: int = option(4, affects_result=False, help="Ray Data read tasks per plain file (gzip files are read by one task); the output does not depend on it")

    def __post_init__(self) -> None:
        for name in ("window_start", "window_end"):
            value = getattr(self, name)
            if value and not _MONTH.match(value):
                raise ConfigError(f"amazon.{name}={value!r}: write a date as YYYY-MM or YYYY-MM-DD")
        if self.user_k < 1 or self.item_k < 1 or self.num_blocks < 1 or self.max_title_words < 1:
            raise ConfigError("amazon: user_k, item_k, num_blocks and max_title_words must be >= 1")


@dataclass(frozen=True)
class DataConfig:
    """``ray-rec data prepare``: one data set into typed artifacts under ``<run>/data``."""

    run: str = option(DEFAULT_RUN, affects_result=False, help="run folder; artifacts go where ray_rec.paths.RunPaths says")
    source: Literal["synthetic", "minionerec", "lcrec", "beauty", "amazon"] = option(
        "synthetic", help="synthetic (embedded default) | minionerec | lcrec | beauty | amazon (raw 2018 dumps)")
    path: str = option("", help="folder of the data set for minionerec, lcrec and beauty")
    name: str = option("", help="file prefix inside path (e.g. Industrial_and_Scientific); empty: the only one there")
    split: Literal["ratio", "leave_one_out"] = option(
        "ratio", help="synthetic/amazon: ratio = all samples sorted by target time and cut 8:1:1 (MiniOneRec); "
                      "leave_one_out = last item test, second last valid. lcrec/beauty are always leave_one_out")
    protocol: Literal["strict", "train+valid"] = option(
        "strict", help="minionerec without a train CSV: strict = windows whose target precedes the user's first "
                       "valid/test row; train+valid = those plus the valid rows")
    max_history: int = option(10, help="history length of a sample: the previous <= N items")
    text_template: str = option(DEFAULT_TEMPLATE, help="item text for the items.text column; fields {title} {description} {brand} {categories}")
    max_field_chars: int = option(1000, help="truncate each field to this many characters before filling the template")
    num_cpus: int = option(0, affects_result=False, help="CPUs for a local Ray (amazon source only); 0 = all")
    synthetic: SyntheticConfig = option(SyntheticConfig(), help="synthetic catalog settings")
    amazon: AmazonConfig = option(AmazonConfig(), help="raw Amazon dump settings")

    def __post_init__(self) -> None:
        if self.source in ("minionerec", "lcrec", "beauty") and not self.path:
            raise ConfigError(f"source={self.source} reads a folder: set path=<folder>, e.g. path=../shared/data/...")
        if self.source == "amazon" and not (self.amazon.reviews and self.amazon.meta):
            raise ConfigError("source=amazon needs amazon.reviews=<file> and amazon.meta=<file>")
        if self.max_history < 1:
            raise ConfigError("max_history must be >= 1")
        if self.max_field_chars < 1:
            raise ConfigError("max_field_chars must be >= 1")


@dataclass(frozen=True)
class EmbedConfig:
    """``ray-rec data embed``: item text -> vectors with Ray Data ``map_batches`` over an actor pool."""

    run: str = option(DEFAULT_RUN, affects_result=False, help="run folder holding data/items.parquet; vectors go to embeddings/")
    encoder: str = option("", help="empty = packaged all-MiniLM-L6-v2; else a local sentence-transformers or Hugging Face encoder folder")
    template: str = option("", help="empty = the items.text column; else a template over {title} {description} {brand} {categories}")
    max_field_chars: int = option(1000, help="truncate each field to this many characters when template is set")
    max_length: int = option(128, help="encoder token limit; longer texts are truncated")
    normalize: bool = option(True, help="scale each vector to unit L2 norm")
    batch_size: int = option(64, affects_result=False, help="texts per encoder call (per map_batches batch)")
    flush_every: int = option(20000, affects_result=False, help="write a part file every this many vectors so an interrupted run resumes")
    resources: Resources = option(Resources(), affects_result=False,
                                  help="encoder actors, each loading the model once; use_gpu = the encoder on CUDA")

    def __post_init__(self) -> None:
        if min(self.batch_size, self.max_length, self.flush_every, self.max_field_chars) < 1:
            raise ConfigError("embed: batch_size, max_length, flush_every, max_field_chars must be >= 1")
