"""What object storage costs: the smoke pipeline on a local run folder vs on an S3 server on loopback.

Both variants run the same config and seeds on one machine, each in its own process with its own local
Ray, alternating which goes first; the S3 one starts from an empty workspace, so every pull and push
is paid. The per-stage wall times come from each run's report (``report/metrics.json``,
``stage_seconds``). Goal (issue 20): the whole pipeline within 1.2x of the local folder.

Run:  .venv/bin/python bench/storage_overhead.py [--repeats 2] [--config jobs/configs/pipeline_smoke.yaml]
          [--set sft.train.max_steps=100 ...]
Writes bench/results/storage_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.common import write_result  # noqa: E402
from tests.multinode import MotoServer  # noqa: E402

BUCKET = "bench"


def run_pipeline(run: str, config: str, sets: list[str], env: dict[str, str], log: Path) -> float:
    """One pipeline run in its own process; returns its wall seconds."""
    cmd = [str(ROOT / ".venv/bin/ray-rec"), "pipeline", "run", "--config", config, "--run", run]
    for s in sets:
        cmd += ["--set", s]
    started = time.perf_counter()
    with open(log, "w") as out:
        subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - started


def report(run_dir_or_uri: str, env: dict[str, str]) -> dict:
    import pyarrow.fs as pafs

    if "://" not in run_dir_or_uri:
        return json.loads((Path(run_dir_or_uri) / "report" / "metrics.json").read_text())
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        fs, path = pafs.FileSystem.from_uri(f"{run_dir_or_uri}/report/metrics.json")
        with fs.open_input_stream(path) as f:
            return json.loads(f.read())
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="jobs/configs/pipeline_smoke.yaml")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--set", dest="sets", action="append", default=[], help="a config override (repeat)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="storage_overhead."))
    rows: list[dict] = []
    with MotoServer() as s3:
        s3.create_bucket(BUCKET)
        env = {**os.environ, **s3.env, "RAY_REC_CACHE": str(scratch / "cache")}
        for i in range(args.repeats):
            order = ("local", "s3") if i % 2 == 0 else ("s3", "local")
            for variant in order:
                run = str(scratch / f"local{i}") if variant == "local" else f"s3://{BUCKET}/run{i}"
                shutil.rmtree(scratch / "cache", ignore_errors=True)  # S3: every pull and push is paid
                wall = run_pipeline(run, args.config, args.sets, env, scratch / f"{variant}{i}.log")
                stages = report(run, s3.env)["stage_seconds"]
                rows.append({"repeat": i, "variant": variant, "wall_s": round(wall, 2), "stage_seconds": stages})
                print(f"repeat {i} {variant}: {wall:.1f} s wall, stages {stages}", flush=True)

    stage_names = list(rows[0]["stage_seconds"])
    ratios: dict[str, float] = {}
    for stage in [*stage_names, "pipeline (stages summed)", "wall (incl. start-up)"]:
        per = []
        for i in range(args.repeats):
            local, s3 = (next(r for r in rows if r["repeat"] == i and r["variant"] == v) for v in ("local", "s3"))
            if stage == "wall (incl. start-up)":
                a, b = local["wall_s"], s3["wall_s"]
            elif stage == "pipeline (stages summed)":
                a, b = sum(local["stage_seconds"].values()), sum(s3["stage_seconds"].values())
            else:
                a, b = local["stage_seconds"][stage], s3["stage_seconds"][stage]
            per.append(b / a if a > 0 else float("nan"))
        ratios[stage] = round(statistics.median(per), 3)
    print("\nmedian ratio S3 / local per stage:")
    for stage, ratio in ratios.items():
        print(f"  {stage:28s} {ratio:.3f}")
    write_result("storage_overhead", {"config": args.config, "sets": args.sets, "repeats": args.repeats,
                                      "runs": rows, "median_ratio_s3_over_local": ratios,
                                      "goal": "pipeline (stages summed) <= 1.2"})
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
