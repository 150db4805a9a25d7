"""``run_pipeline(cfg)``: every stage on one run folder, then a side-by-side report.

    data -> embed -> sid -> sft -> evaluate (test split)   and   sasrec (same splits)
    ... sft -> rl (GRPO, then its model evaluated like the SFT model)      when stages lists rl
    data -> sasrec -> sid -> sft -> evaluate                  with sid_input=sasrec (collaborative SIDs)

Each stage skips itself when its outputs exist for the same config (``ray_rec.stage``); on top of that
the pipeline marks a stage stale when a stage it reads from finished later than it did, so changing the
catalogue retrains everything downstream while a rerun with nothing changed costs seconds.

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
from ray_rec.stage import STAGE_FILE

REPORT_KS = (1, 3, 5, 10, 20)
# stage -> the stages whose outputs it reads
UPSTREAM = {"data": [], "embed": ["data"], "sid": ["embed"], "sft": ["data", "sid"],
            "evaluate": ["sft", "sid", "data"], "sasrec": ["data"], "rl": ["sft", "sid", "data"]}


def bind_run(cfg: PipelineConfig) -> PipelineConfig:
    """Every section's run folder set to ``cfg.run`` (the stages chain through it)."""
    run = str(Path(cfg.run).expanduser().resolve())
    return dataclasses.replace(
        cfg, run=run,
        data=dataclasses.replace(cfg.data, run=run),
        embed=dataclasses.replace(cfg.embed, run=run),
        sid=dataclasses.replace(cfg.sid, run=run, embeddings=str(RunPaths(run).sasrec_embeddings)
                                if cfg.sid_input == "sasrec" else cfg.sid.embeddings),
        sft=dataclasses.replace(cfg.sft, run=run),
        evaluate=dataclasses.replace(cfg.evaluate, run=run, split="test"),
        sasrec=dataclasses.replace(cfg.sasrec, run=run),
        rl=dataclasses.replace(cfg.rl, run=run, model=""),
    )


def stage_dirs(cfg: PipelineConfig) -> dict[str, Path]:
    """Where each stage writes its stage.json."""
    paths = RunPaths(cfg.run)
    return {"data": paths.data_dir, "embed": paths.embeddings.parent, "sid": paths.sid_dir(cfg.sid.out_name),
            "sft": paths.sft_dir, "evaluate": paths.eval_dir(cfg.evaluate.name) / "test",
            "sasrec": paths.sasrec_dir, "rl": paths.rl_dir}


def upstream(cfg: PipelineConfig) -> dict[str, list[str]]:
    """stage -> the stages whose outputs it reads, under this config."""
    ups = dict(UPSTREAM)
    if cfg.sid_input == "sasrec":
        ups["sid"] = ["sasrec"]
    if cfg.sft.distill.reads_run_sasrec:
        ups["sft"] = [*ups["sft"], "sasrec"]  # SFT learns from the run's SASRec
    return ups


def invalidate_stale(stage: str, dirs: dict[str, Path], ups: dict[str, list[str]] = UPSTREAM) -> bool:
    """Drop ``stage``'s stage.json when an upstream stage finished after it; True if it was dropped."""
    mine = dirs[stage] / STAGE_FILE
    if not mine.is_file():
        return False
    for up in ups[stage]:
        theirs = dirs[up] / STAGE_FILE
        if theirs.is_file() and theirs.stat().st_mtime > mine.stat().st_mtime:
            mine.unlink()
            return True
    return False


def run_stage(stage: str, cfg: PipelineConfig) -> Any:
    """Run one stage through its public entry point."""
    if stage == "data":
        from ray_rec.data.prepare import run_prepare
        return run_prepare(cfg.data)
    if stage == "embed":
        from ray_rec.data.embed import run_embed
        return run_embed(cfg.embed)
    if stage == "sid":
        from ray_rec.sid.build import run_sid_build
        return run_sid_build(cfg.sid)
    if stage == "sft":
        from ray_rec.train.run import run_sft
        return run_sft(cfg.sft)
    if stage == "evaluate":
        from ray_rec.eval.evaluate import run_evaluate
        return run_evaluate(cfg.evaluate)
    if stage == "rl":
        from ray_rec.eval.evaluate import run_evaluate
        from ray_rec.rl.run import run_rl
        model = run_rl(cfg.rl)
        return run_evaluate(dataclasses.replace(cfg.evaluate, checkpoint=str(model), name=rl_eval_name(cfg)))
    from ray_rec.baseline.train import run_sasrec
    return run_sasrec(cfg.sasrec)


def rl_eval_name(cfg: PipelineConfig) -> str:
    """Where the RL model's evaluation goes: ``<run>/eval/<evaluate.name>-rl/test``."""
    return f"{cfg.evaluate.name}-rl"


def run_pipeline(cfg: PipelineConfig) -> dict[str, Any]:
    """Run the configured stages in order and write the report; returns the report's rows."""
    from ray_rec.runtime import init_ray

    cfg = bind_run(cfg)
    init_ray(num_cpus=cfg.num_cpus)
    dirs = stage_dirs(cfg)
    timings: dict[str, float] = {}
    results: dict[str, Any] = {}
    for i, stage in enumerate(cfg.stages, 1):
        if invalidate_stale(stage, dirs, upstream(cfg)):
            print(f"pipeline: {stage} is older than its inputs; redoing it")
        print(f"\n=== pipeline [{i}/{len(cfg.stages)}] {stage} ===", flush=True)
        started = time.time()
        results[stage] = run_stage(stage, cfg)
        timings[stage] = round(time.time() - started, 2)
        print(f"=== {stage} done in {timings[stage]:.1f} s ===", flush=True)
    return write_report(cfg, results, timings)


def report_rows(cfg: PipelineConfig, results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Test-split metric rows: the generative model, SASRec, and random ranking over the catalogue."""
    import pyarrow.parquet as pq

    rows: dict[str, dict[str, float]] = {}
    for stage, label in (("evaluate", "generative (SFT, constrained beam)"),
                         ("rl", "generative (SFT + GRPO, constrained beam)")):
        if stage in results:
            rows[label] = {k: v for k, v in results[stage].items() if k.startswith(("hr@", "ndcg@"))}
    if "sasrec" in results:
        rows["SASRec"] = dict(results["sasrec"]["test"])
    n_items = pq.read_metadata(RunPaths(cfg.run).items).num_rows
    rows["random"] = {**{f"hr@{k}": min(k, n_items) / n_items for k in REPORT_KS},
                      **{f"ndcg@{k}": random_ndcg(k, n_items) for k in REPORT_KS}}
    return rows


def random_ndcg(k: int, n: int) -> float:
    """Expected NDCG@K of a uniformly random ranking of ``n`` items: (1/n) * sum_{r<K} 1/log2(r+2)."""
    import math
    return sum(1.0 / math.log2(r + 2) for r in range(min(k, n))) / n


def write_report(cfg: PipelineConfig, results: dict[str, Any], timings: dict[str, float]) -> dict[str, Any]:
    """metrics.json, metrics.md and metrics.png under ``<run>/report``."""
    out = Path(cfg.run) / "report"
    rows = report_rows(cfg, results)
    keys = [f"{m}@{k}" for m in ("hr", "ndcg") for k in REPORT_KS]
    table = format_table(rows, keys)
    write_json({"test": rows, "stage_seconds": timings}, out / "metrics.json")
    write_text(f"# Test-split metrics ({cfg.run})\n\n{table}\nStage wall times (s): "
               + json.dumps(timings) + "\n", out / "metrics.md")
    plot_rows(rows, out / "metrics.png")
    print("\n" + table)
    print(f"report: {out}/metrics.md, {out}/metrics.png")
    return {"test": rows, "stage_seconds": timings, "report_dir": str(out)}


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
