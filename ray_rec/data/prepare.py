"""``run_prepare(cfg)``: one data set -> typed Parquet artifacts in ``<run>/data`` (see ray_rec.paths).

Writes items.parquet, interactions.parquet, samples_{train,valid,test}.parquet (schemas in
:mod:`ray_rec.schema`), each atomically, then manifest.json (counts, sha256 of every artifact,
the config) and stage.json last; a rerun with the same config is skipped.

The Parquet artifacts are read back with :mod:`ray_rec.artifacts` (which checks and casts every
file), e.g. ``artifacts.read_samples(RunPaths(run).samples("test"))``; :func:`read_manifest` reads the
manifest of a run folder.

Run it::

    ray-rec data prepare --set source=lcrec --set path=../shared/data/scientific --set run=runs/sci
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from ray_rec import schema, stages
from ray_rec.config import to_dict
from ray_rec.data.config import DataConfig
from ray_rec.data.loaders import Loaded
from ray_rec.data.samples import with_text
from ray_rec.errors import InputError
from ray_rec.io import file_sha256, write_json, write_parquet
from ray_rec.paths import SPLITS, RunPaths


def _as_paths(paths: RunPaths | str | Path) -> RunPaths:
    return paths if isinstance(paths, RunPaths) else RunPaths(paths)


def read_manifest(paths: RunPaths | str | Path) -> dict:
    """The data manifest: counts, content hashes and the config that made the artifacts."""
    path = _as_paths(paths).data_manifest
    if not path.is_file():
        raise InputError(f"{path}: no data manifest; run `ray-rec data prepare` first")
    return json.loads(path.read_text())


def load_source(cfg: DataConfig) -> Loaded:
    """Read the configured source into tables (text not yet filled)."""
    from ray_rec.data import loaders

    path = Path(cfg.path).expanduser()
    if cfg.source == "minionerec":
        return loaders.load_minionerec(path, cfg.name, cfg.protocol, cfg.max_history)
    if cfg.source == "lcrec":
        return loaders.load_lcrec(path, cfg.name, cfg.max_history)
    if cfg.source == "beauty":
        return loaders.load_beauty(path, cfg.name, cfg.max_history)
    if cfg.source == "synthetic":
        from ray_rec.data.synthetic import generate_synthetic
        return generate_synthetic(cfg.synthetic, cfg.max_history, cfg.split)
    if cfg.source == "amazon":
        from ray_rec.data.amazon import preprocess_amazon
        return preprocess_amazon(cfg.amazon, cfg.max_history, cfg.split, cfg.num_cpus or None)
    raise InputError(f"unknown source {cfg.source!r}")


def validate(loaded: Loaded) -> None:
    """Every id in interactions and samples names an item; item ids are unique."""
    ids = loaded.items.column("item_id").to_numpy()
    if len(np.unique(ids)) != len(ids):
        raise InputError("items: duplicate item ids")
    n = len(ids)
    if n and (ids.min() != 0 or ids.max() != n - 1):
        raise InputError(f"items: ids must be 0..{n - 1}")
    checks = [("interactions", "item_id", loaded.interactions.column("item_id"))]
    for split, table in loaded.samples.items():
        checks += [(f"samples_{split}", "target", table.column("target")),
                   (f"samples_{split}", "history", table.column("history").combine_chunks().flatten())]
    for where, name, col in checks:
        values = col.to_numpy() if len(col) else np.zeros(0, np.int64)
        bad = values[(values < 0) | (values >= n)]
        if len(bad):
            raise InputError(f"{where}: field {name!r}: unknown item {int(bad[0])} (item ids are 0..{n - 1})")


def write_artifacts(loaded: Loaded, paths: RunPaths, cfg: DataConfig) -> dict:
    """Write every table atomically, then the manifest; returns the manifest."""
    items = with_text(loaded.items, cfg.text_template, cfg.max_field_chars)
    tables = {paths.items: (items, schema.ITEMS), paths.interactions: (loaded.interactions, schema.INTERACTIONS)}
    for split in SPLITS:
        tables[paths.samples(split)] = (loaded.samples[split], schema.SAMPLES)
    for path, (table, sch) in tables.items():
        write_parquet(table.combine_chunks(), path, sch)
    inter = loaded.interactions
    counts = {
        "items": len(items),
        "users": len(pc.unique(inter.column("user_id"))),
        "interactions": len(inter),
        **{f"samples_{s}": len(loaded.samples[s]) for s in SPLITS},
    }
    manifest = {
        "source": cfg.source,
        "counts": counts,
        "sha256": {p.name: file_sha256(p) for p in tables},
        "info": loaded.info,
        "config": to_dict(cfg),
    }
    write_json(manifest, paths.data_manifest)
    return manifest


def run_prepare(cfg: DataConfig) -> RunPaths:
    """Prepare the configured data set in ``cfg.run`` (skipped when done with the same config)."""
    paths = RunPaths(cfg.run)
    if stages.up_to_date("data", cfg):
        print(f"data: {paths.location(paths.data_dir)} is up to date (same config); skipped")
        return paths
    started = time.time()
    # the old stage record goes first: a crash while new artifacts replace old ones must not look done
    stages.begin("data", cfg)
    loaded = load_source(cfg)
    validate(loaded)
    manifest = write_artifacts(loaded, paths, cfg)
    stages.finish("data", cfg, started, counts=manifest["counts"])
    c = manifest["counts"]
    print(f"data: {c['items']} items, {c['users']} users, {c['interactions']} interactions; samples "
          f"train {c['samples_train']}, valid {c['samples_valid']}, test {c['samples_test']} -> {paths.location(paths.data_dir)}")
    return paths
