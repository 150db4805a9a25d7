"""A tiny run folder for the training stages' tests: items with titles, random 3-level SIDs, and users
who always buy item i+1 after item i (so a model can learn the next item and a test can tell)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ray_rec.io import write_parquet
from ray_rec.paths import RunPaths
from ray_rec.schema import CODES, ITEMS, SAMPLES

WORDS = ["tape", "glue", "drill", "saw", "glove", "mask", "pipe", "valve", "screw", "bolt", "nut", "wire"]
def write_tiny_run(root: Path, n_items: int = 48, n_users: int = 60, seq_len: int = 8, seed: int = 0) -> RunPaths:
    """Items with titles, random 3-level SIDs (8 codes each), users who always buy item i+1 after item i."""
    rng = np.random.default_rng(seed)
    paths = RunPaths(root)
    titles = [f"{WORDS[i % 12]} {WORDS[(i // 12) % 12]} model {i}" for i in range(n_items)]
    write_parquet(pa.table({"item_id": np.arange(n_items), "title": titles, "description": [""] * n_items,
                            "brand": [""] * n_items, "categories": [[]] * n_items, "text": titles}), paths.items, ITEMS)
    flat = rng.choice(512, size=n_items, replace=False)
    write_parquet(pa.table({"item_id": np.arange(n_items), "codes": [[int(f // 64), int(f // 8 % 8), int(f % 8)]
                                                                     for f in flat]}), paths.codes("rqkmeans"), CODES)
    rows: dict[str, list] = {"train": [], "valid": [], "test": []}
    for u in range(n_users):
        start = int(rng.integers(n_items))
        seq = [(start + k) % n_items for k in range(seq_len)]
        for k in range(1, seq_len):
            split = "test" if k == seq_len - 1 else "valid" if k == seq_len - 2 else "train"
            rows[split].append((u, seq[max(0, k - 5):k], seq[k]))
    for split, r in rows.items():
        write_parquet(pa.table({"user_id": [x[0] for x in r], "history": [x[1] for x in r],
                                "target": [x[2] for x in r]}), paths.samples(split), SAMPLES)
    return paths
