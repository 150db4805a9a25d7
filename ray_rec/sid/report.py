"""How good a set of SIDs is: collisions, code usage and entropy per level, reconstruction error.

* collision rate = 1 - distinct SIDs / items (MiniOneRec's shipped Industrial SIDs: 1 - 3670/3686);
* items per SID at most (a decoder cannot tell those items apart);
* per level: codes used out of K, and the entropy of the code distribution in bits (log2 K at best:
  every code used equally often), so an unbalanced codebook shows up as low entropy;
* reconstruction error: mean ||x - x_hat||^2 / mean ||x||^2 when a quantizer can decode.

``usage.png`` draws, per level, how many items each code holds (sorted), against the uniform line.
Example::

    report = sid_report(codes, sizes=[256, 256, 256])
    print(format_report({"constrained": report}))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ray_rec.sid.collisions import PAD, sid_groups
from ray_rec.sid.tokens import LEVEL_LETTERS


def entropy_bits(counts: np.ndarray) -> float:
    """Shannon entropy (bits) of the distribution proportional to ``counts``.

    >>> entropy_bits(np.array([5, 5, 5, 5]))
    2.0
    >>> entropy_bits(np.array([7, 0, 0]))
    0.0
    """
    p = counts[counts > 0] / counts.sum()
    return float(max(0.0, -(p * np.log2(p)).sum()))


def collision_stats(codes: np.ndarray) -> dict[str, Any]:
    """(n, L) codes (-1 padded) -> items, distinct SIDs, collision rate, colliding items, max items per SID.

    >>> stats = collision_stats(np.array([[1, 2], [1, 2], [1, 3]]))
    >>> stats["distinct_sids"], stats["colliding_items"], round(stats["collision_rate"], 4)
    (2, 2, 0.3333)
    """
    inverse, counts = sid_groups(codes)
    n = len(codes)
    return {
        "items": n,
        "distinct_sids": len(counts),
        "collision_rate": 1.0 - len(counts) / n if n else 0.0,
        "colliding_items": int((counts[inverse] > 1).sum()),
        "max_items_per_sid": int(counts.max(initial=0)),
    }


def level_usage(codes: np.ndarray, sizes: list[int]) -> list[dict[str, Any]]:
    """(n, L') codes -> per level: codebook size, codes used, usage, entropy (bits and / log2 K).

    Levels beyond ``sizes`` (a de-duplication level) are sized by their largest code + 1 and counted
    over the items that have them.
    """
    out = []
    for level in range(codes.shape[1]):
        col = codes[:, level]
        col = col[col != PAD]
        k = sizes[level] if level < len(sizes) else int(col.max(initial=0)) + 1
        counts = np.bincount(col, minlength=k)
        h = entropy_bits(counts)
        out.append({"level": level, "codebook_size": k, "items": int(len(col)), "codes_used": int((counts > 0).sum()),
                    "usage": float((counts > 0).mean()), "entropy_bits": h,
                    "entropy_norm": h / np.log2(k) if k > 1 else 1.0, "max_items_per_code": int(counts.max(initial=0)),
                    "dedup": level >= len(sizes)})
    return out


def sid_report(codes: np.ndarray, sizes: list[int], x: np.ndarray | None = None,
               x_hat: np.ndarray | None = None) -> dict[str, Any]:
    """The whole report of (n, L') codes whose first len(sizes) levels are quantizer levels.

    ``collisions`` counts whole SIDs (de-duplication level included); ``base_collisions`` the
    quantizer levels only, i.e. before de-duplication. Pass (n, d) ``x`` and its reconstruction
    ``x_hat`` to get the reconstruction error.
    """
    levels = level_usage(codes, sizes)
    base = [lv for lv in levels if not lv["dedup"]]
    report: dict[str, Any] = {
        "collisions": collision_stats(codes),
        "base_collisions": collision_stats(codes[:, :len(sizes)]),
        "levels": levels,
        "mean_entropy_bits": float(np.mean([lv["entropy_bits"] for lv in base])),
        "mean_usage": float(np.mean([lv["usage"] for lv in base])),
        "dedup_items": int((codes[:, len(sizes):] != PAD).any(axis=1).sum()) if codes.shape[1] > len(sizes) else 0,
        "reconstruction_error": None,
    }
    if x is not None and x_hat is not None:
        err = ((x - x_hat) ** 2).sum(1).mean() / max(float((x ** 2).sum(1).mean()), 1e-12)
        report["reconstruction_error"] = float(err)
    return report


def report_row(name: str, report: dict[str, Any]) -> dict[str, Any]:
    """One flat row of the headline numbers (for tables and benchmarks)."""
    ent = [round(lv["entropy_bits"], 3) for lv in report["levels"] if not lv["dedup"]]
    rec = report["reconstruction_error"]
    return {"sids": name, "items": report["collisions"]["items"],
            "distinct": report["collisions"]["distinct_sids"],
            "collision_rate": round(report["collisions"]["collision_rate"], 5),
            "max_per_sid": report["collisions"]["max_items_per_sid"],
            "base_collision_rate": round(report["base_collisions"]["collision_rate"], 5),
            "dedup_items": report["dedup_items"], "mean_entropy_bits": round(report["mean_entropy_bits"], 3),
            "entropy_bits_per_level": ent, "mean_usage": round(report["mean_usage"], 3),
            "reconstruction_error": None if rec is None else round(rec, 4)}


def format_report(reports: dict[str, dict[str, Any]]) -> str:
    """A fixed-width table, one row per named report."""
    rows = [report_row(name, r) for name, r in reports.items()]
    cols = list(rows[0]) if rows else []
    cells = [[str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def plot_usage(codes: np.ndarray, sizes: list[int], title: str = "") -> Any:
    """A matplotlib figure: per level, items per code sorted high to low, with the uniform n/K line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    usage = level_usage(codes, sizes)
    fig, axes = plt.subplots(1, len(usage), figsize=(4 * len(usage), 3), squeeze=False)
    for ax, lv in zip(axes[0], usage, strict=True):
        col = codes[:, lv["level"]]
        counts = np.sort(np.bincount(col[col != PAD], minlength=lv["codebook_size"]))[::-1]
        ax.bar(np.arange(len(counts)), counts, width=1.0, color="tab:blue")
        ax.axhline(lv["items"] / lv["codebook_size"], color="tab:red", lw=1, label="uniform")
        kind = f"{'dedup level' if lv['dedup'] else 'level'} <{LEVEL_LETTERS[lv['level']]}_*>"
        ax.set_title(f"{kind}: {lv['codes_used']}/{lv['codebook_size']} used, H={lv['entropy_bits']:.2f} bits",
                     fontsize=9)
        ax.set_xlabel("code (sorted by items)")
        ax.set_ylabel("items")
        ax.legend(fontsize=8, loc="upper right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
