"""``ray-rec data stats``: counts, sparsity and the distribution of sequence and history lengths of a
prepared run folder, written as ``data/stats.json`` and a PNG histogram ``data/stats.png``.

    ray-rec data stats --run runs/default
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ray_rec.io import save_figure, write_json
from ray_rec.paths import SPLITS, RunPaths


def _quantiles(x: np.ndarray) -> dict:
    if not len(x):
        return {"min": 0, "median": 0, "mean": 0.0, "p90": 0, "max": 0}
    return {"min": int(x.min()), "median": float(np.median(x)), "mean": round(float(x.mean()), 3),
            "p90": float(np.percentile(x, 90)), "max": int(x.max())}


def compute_stats(paths: RunPaths | str | Path) -> dict:
    """Counts, sparsity (1 - interactions / (users * items)), per-user sequence lengths, per-split
    history lengths and item popularity of a prepared run folder."""
    from ray_rec import artifacts

    paths = paths if isinstance(paths, RunPaths) else RunPaths(paths)
    items, inter = artifacts.read_items(paths.items), artifacts.read_interactions(paths.interactions)
    users = inter.column("user_id").to_numpy()
    _, seq_len = np.unique(users, return_counts=True)
    pop = np.bincount(inter.column("item_id").to_numpy(), minlength=len(items))
    n_users, n_items = len(seq_len), len(items)
    stats = {
        "items": n_items, "users": n_users, "interactions": len(inter),
        "sparsity": round(1 - len(inter) / max(1, n_users * n_items), 6),
        "sequence_length": _quantiles(seq_len),
        "item_popularity": {**_quantiles(pop), "never_seen": int((pop == 0).sum())},
        "splits": {},
    }
    hist_lengths = {}
    for split in SPLITS:
        samples = artifacts.read_samples(paths.samples(split))
        lengths = np.asarray(samples.column("history").combine_chunks().value_lengths().fill_null(0))
        hist_lengths[split] = lengths
        stats["splits"][split] = {"samples": len(samples), "history_length": _quantiles(lengths)}
    return stats, seq_len, hist_lengths


def plot_stats(seq_len: np.ndarray, hist_lengths: dict[str, np.ndarray], path: Path) -> Path:
    """Two histograms: sequence length per user, history length per sample and split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    a.hist(seq_len, bins=min(50, max(1, len(np.unique(seq_len)))), color="tab:blue")
    a.set(title="interactions per user", xlabel="sequence length", ylabel="users", yscale="log")
    top = max([int(v.max()) for v in hist_lengths.values() if len(v)] + [1])
    bins = np.arange(0.5, top + 1.5)
    for split, lengths in hist_lengths.items():
        b.hist(lengths, bins=bins, histtype="step", linewidth=1.5, label=f"{split} ({len(lengths)})")
    b.set(title="history length per sample", xlabel="history length", ylabel="samples")
    b.legend()
    return save_figure(fig, path)


def run_stats(paths: RunPaths | str | Path) -> dict:
    """Write ``data/stats.json`` and ``data/stats.png``; return the stats."""
    paths = paths if isinstance(paths, RunPaths) else RunPaths(paths)
    stats, seq_len, hist_lengths = compute_stats(paths)
    write_json(stats, paths.data_dir / "stats.json")
    plot_stats(seq_len, hist_lengths, paths.data_dir / "stats.png")
    return stats


def format_stats(stats: dict) -> str:
    """A few readable lines."""
    lines = [f"items {stats['items']:,}  users {stats['users']:,}  interactions {stats['interactions']:,}  "
             f"sparsity {stats['sparsity']:.4%}",
             f"sequence length: {stats['sequence_length']}"]
    for split, s in stats["splits"].items():
        lines.append(f"{split:5s}: {s['samples']:,} samples, history length {s['history_length']}")
    return "\n".join(lines)
