"""``run_pipeline(cfg)``: every stage on one run folder, then a side-by-side report.

    data -> embed -> sid -> sft -> evaluate (test split)   and   sasrec (same splits)
    ... sft -> rl (GRPO, then its model evaluated like the SFT model)      when stages lists rl
    data -> sasrec -> sid -> sft -> evaluate                  with sid_input=sasrec (collaborative SIDs)

Each stage is run through its entry in the stage registry (:mod:`ray_rec.stages`) and skips itself
when it finished with the same config and the same inputs (:mod:`ray_rec.stage`, the rule every
``ray-rec`` command follows), so changing the catalogue retrains everything downstream while a rerun
with nothing changed costs seconds.

The report (``<run>/report/``): metrics.json, metrics.md (a markdown table) and metrics.png (HR@K and
NDCG@K of the generative model, SASRec and random ranking side by side).
Run it with ``ray-rec pipeline run`` (``make run``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from ray_rec.io import save_figure, write_json, write_text
from ray_rec.metrics import format_table
from ray_rec.paths import RunPaths
from ray_rec.pipeline.config import PipelineConfig
from ray_rec.stages import STAGES

REPORT_KS = (1, 3, 5, 10, 20)


def run_stage(stage: str, sections: dict[str, Any]) -> Any:
    """Run one stage through its registry entry on its bound section. After GRPO, its model is scored
    by the evaluate section as ``<evaluate.name>-rl`` beside the SFT model."""
    result = STAGES[stage].entry()(sections[stage])
    if stage == "rl":
        evaluate = sections["evaluate"]
        return STAGES["evaluate"].entry()(dataclasses.replace(evaluate, checkpoint=str(result),
                                                                name=rl_eval_name(evaluate.name)))
    return result


def rl_eval_name(evaluate_name: str) -> str:
    """Where the RL model's evaluation goes: ``<run>/eval/<evaluate.name>-rl/test``."""
    return f"{evaluate_name}-rl"


def run_pipeline(cfg: PipelineConfig) -> dict[str, Any]:
    """Run the configured stages in order and write the report; returns the report's rows."""
    from ray_rec.runtime import init_ray

    sections = cfg.bound()
    init_ray(num_cpus=cfg.num_cpus)
    timings: dict[str, float] = {}
    results: dict[str, Any] = {}
    for i, stage in enumerate(cfg.stages, 1):
        print(f"\n=== pipeline [{i}/{len(cfg.stages)}] {stage} ===", flush=True)
        started = time.time()
        results[stage] = run_stage(stage, sections)
        timings[stage] = round(time.time() - started, 2)
        print(f"=== {stage} done in {timings[stage]:.1f} s ===", flush=True)
    return write_report(RunPaths(sections["data"].run), results, timings, made_in(cfg.stages, sections))


def made_in(names: list[str], sections: dict[str, Any]) -> dict[str, float]:
    """Seconds each stage's outputs took to make, from its record (``stage.json``) in the registry's
    ``out_dir``: a rerun that skips a stage still reports the real time, not the skip's."""
    from ray_rec.stage import read_record

    records = {name: read_record(STAGES[name].out_dir(sections[name])) for name in names}
    return {name: float(r.get("seconds", 0.0)) for name, r in records.items() if r is not None}


def report_rows(paths: RunPaths, results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Test-split metric rows: the generative model, SASRec, and random ranking over the catalogue."""
    import pyarrow.parquet as pq

    rows: dict[str, dict[str, float]] = {}
    for stage, label in (("evaluate", "generative (SFT, constrained beam)"),
                         ("rl", "generative (SFT + GRPO, constrained beam)")):
        if stage in results:
            rows[label] = {k: v for k, v in results[stage].items() if k.startswith(("hr@", "ndcg@"))}
    if "sasrec" in results:
        rows["SASRec"] = dict(results["sasrec"]["test"])
    n_items = pq.read_metadata(paths.items).num_rows
    rows["random"] = {**{f"hr@{k}": min(k, n_items) / n_items for k in REPORT_KS},
                      **{f"ndcg@{k}": random_ndcg(k, n_items) for k in REPORT_KS}}
    return rows


def random_ndcg(k: int, n: int) -> float:
    """Expected NDCG@K of a uniformly random ranking of ``n`` items: (1/n) * sum_{r<K} 1/log2(r+2)."""
    import math
    return sum(1.0 / math.log2(r + 2) for r in range(min(k, n))) / n


def write_report(paths: RunPaths, results: dict[str, Any], timings: dict[str, float],
                 made: dict[str, float] | None = None) -> dict[str, Any]:
    """metrics.json, metrics.md and metrics.png under ``<run>/report``. ``timings``: this run's wall
    time per stage (about 0 for a skipped one); ``made``: the time each stage's outputs took to make."""
    made = made or {}
    out = paths.report_dir
    rows = report_rows(paths, results)
    keys = [f"{m}@{k}" for m in ("hr", "ndcg") for k in REPORT_KS]
    table = format_table(rows, keys)
    write_json({"test": rows, "stage_seconds": timings, "made_in_seconds": made}, out / "metrics.json")
    write_text(f"# Test-split metrics ({paths.uri})\n\n{table}\nSeconds each stage's outputs took to make: "
               + json.dumps(made) + "\nWall seconds of this run per stage (about 0 where a stage was up to "
               "date and skipped): " + json.dumps(timings) + "\n", out / "metrics.md")
    plot_rows(rows, out / "metrics.png")
    if paths.storage.remote:
        paths.storage.push(out)
    where = paths.location(out)
    print("\n" + table)
    print(f"report: {where}/metrics.md, {where}/metrics.png")
    return {"test": rows, "stage_seconds": timings, "made_in_seconds": made, "report_dir": where}


def plot_rows(rows: dict[str, dict[str, float]], path: Path) -> Path:
    """Grouped bars of HR@K and NDCG@K, one colour per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False)
    width = 0.8 / max(1, len(rows))
    x = np.arange(len(REPORT_KS))
    for ax, metric in zip(axes, ("hr", "ndcg"), strict=True):
        for j, (name, m) in enumerate(rows.items()):
            ax.bar(x + j * width, [m.get(f"{metric}@{k}", 0.0) for k in REPORT_KS], width, label=name)
        ax.set_xticks(x + width * (len(rows) - 1) / 2, [f"@{k}" for k in REPORT_KS])
        ax.set_title(f"{metric.upper()}@K on the test split")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    return save_figure(fig, path)
