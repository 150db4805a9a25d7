"""Toy recommender training throughput: the plain loop without Ray vs TorchTrainer with 1 and 2 workers.

All three run the same loop on the same data in one invocation (so they share the machine's load);
samples/s is the loop's own training-time measure (evaluation excluded), the median over epochs after
the first; wall time includes Ray start-up and checkpointing. Prints ratios and writes
bench/results/toy_throughput.json::

    .venv/bin/python bench/toy_throughput.py [--epochs 4] [--set data.num_users=2000 ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import Timer, write_result  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--config", default="jobs/configs/toy.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()

    from ray_rec.runtime import init_ray, set_threads, setup_env

    setup_env()
    set_threads(1)
    from ray_rec.config import load_config
    from ray_rec.paths import RunPaths
    from ray_rec.toy.config import ToyConfig
    from ray_rec.toy.data import load_sequences
    from ray_rec.toy.loop import LocalSession, fit
    from ray_rec.toy.train import run_toy_train

    tmp = Path(tempfile.mkdtemp(prefix="toy-bench-"))
    base = [f"run={tmp}", f"train.epochs={args.epochs}", *args.overrides]
    results = {}

    cfg = load_config(ToyConfig, args.config, base + ["resources.workers=1"])
    seqs = load_sequences(cfg.data, cfg.seed)
    session = LocalSession(tmp / "plain")
    with Timer() as t:
        fit(cfg, seqs, session)
    results["plain"] = summarize(session.reports, t.seconds)

    init_ray()
    for workers in (1, 2):
        cfg = load_config(ToyConfig, args.config, base + [f"resources.workers={workers}", f"name=bench-{uuid.uuid4().hex[:6]}"])
        with Timer() as t:
            run_toy_train(cfg)
        history = json.loads((RunPaths(cfg.run).toy_train_dir(cfg.name) / "history.json").read_text())
        results[f"torchtrainer_{workers}w"] = summarize(history, t.seconds)

    ref = results["plain"]["samples_per_s"]
    for name, r in results.items():
        r["ratio_vs_plain"] = round(r["samples_per_s"] / ref, 3)
        print(f"{name:18s} {r['samples_per_s']:10.0f} samples/s  x{r['ratio_vs_plain']:.2f} vs plain   "
              f"wall {r['wall_s']:.1f} s   final ndcg@10 {r['ndcg@10']:.4f}")
    write_result("toy_throughput", {"config": args.config, "overrides": base, "epochs": args.epochs,
                                    "train_samples_per_epoch": results["plain"]["train_samples"], **results})


def summarize(history: list[dict], wall_s: float) -> dict:
    later = [h["samples_per_s"] for h in history[1:]] or [history[0]["samples_per_s"]]
    return {"samples_per_s": round(statistics.median(later), 1), "wall_s": round(wall_s, 2),
            "epochs": len(history), "ndcg@10": history[-1]["ndcg@10"],
            "train_samples": history[-1].get("train_samples")}


if __name__ == "__main__":
    main()
