"""Data stage: typed Parquet artifacts, loaders for public data sets, raw Amazon preprocessing on Ray
Data, a synthetic catalog, item-text embeddings.

Public API (imported lazily, so ``import ray_rec.data`` stays cheap):

* ``run_prepare(cfg: DataConfig) -> RunPaths`` -- write items/interactions/samples + manifest (prepare.py)
* ``run_embed(cfg: EmbedConfig) -> Path`` -- item vectors, embeddings/embeddings.parquet (embed.py)
* ``read_items(paths) -> pa.Table``, ``read_interactions(paths)``, ``read_samples(paths, split)``,
  ``read_manifest(paths) -> dict`` (``paths``: a RunPaths or a run folder)
* ``read_embeddings(path) -> (item_ids (n,) int64, vectors (n, d) float32)`` (file or run folder)
* ``generate_synthetic(cfg: SyntheticConfig, max_history=10, split="ratio") -> Loaded`` (synthetic.py)
* ``preprocess_amazon(cfg: AmazonConfig, max_history, split) -> Loaded`` (amazon.py)
* ``load_minionerec / load_lcrec / load_beauty(folder, name, ...) -> Loaded`` (loaders.py)
* ``run_stats(paths) -> dict`` (stats.py); configs ``DataConfig``, ``EmbedConfig`` (config.py)
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "run_prepare": "prepare", "read_items": "prepare", "read_interactions": "prepare",
    "read_samples": "prepare", "read_manifest": "prepare",
    "run_embed": "embed", "read_embeddings": "embed",
    "generate_synthetic": "synthetic", "preprocess_amazon": "amazon",
    "load_minionerec": "loaders", "load_lcrec": "loaders", "load_beauty": "loaders", "Loaded": "loaders",
    "run_stats": "stats", "DataConfig": "config", "EmbedConfig": "config",
    "SyntheticConfig": "config", "AmazonConfig": "config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"ray_rec.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'ray_rec.data' has no attribute {name!r}")
