"""What GRPO adds: the SFT model and the model GRPO made from it, evaluated side by side on one split.

Takes a run folder whose SFT stage has finished (``bench/quality.py`` leaves them under its
``--work-dir``, e.g. ``/tmp/sasrec_bench/industrial-strict``, with SFT runs named ``sft-seed<seed>``:
pick one with ``--set sft_name=sft-seed0``), runs ``ray-rec rl`` on it with ``--config`` plus ``--set``
overrides (outputs in ``<run>/rl/<name>/``), then ranks the same users with both models through the
same evaluation (constrained beam search, ``jobs/configs/evaluate.yaml``; an evaluation already done
for a model is reused). Writes ``bench/results/<name>.json`` and ``.md`` with both rows, the ratios, the
per-user paired differences and the RL run's valid NDCG@K per evaluation.

Run:  .venv/bin/python bench/rl_quality.py --run /tmp/sasrec_bench/industrial-strict --name rl_industrial \\
          --set sft_name=sft-seed0 [--config jobs/configs/rl_cpu.yaml] [--set train.max_steps=300] \\
          [--eval-set resources.workers=2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import RESULTS, write_result  # noqa: E402
from ray_rec.config import load_config, to_dict  # noqa: E402
from ray_rec.eval.config import EvalConfig  # noqa: E402
from ray_rec.eval.evaluate import run_evaluate  # noqa: E402
from ray_rec.metrics import format_table  # noqa: E402
from ray_rec.paths import RunPaths  # noqa: E402
from ray_rec.rl.config import RLConfig  # noqa: E402
from ray_rec.rl.run import model_dir_of, run_rl  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KEYS = [f"{m}@{k}" for k in (3, 5, 10) for m in ("hr", "ndcg")]


def paired(paths: RunPaths, split: str, before: str, after: str, k: int = 10) -> dict[str, float]:
    """Per-user HR@k and NDCG@k differences of two evaluations of the same users (``after - before``):
    the mean, its standard error and t, and how many users gained or lost a hit."""
    import numpy as np
    import pyarrow.parquet as pq

    from ray_rec.metrics import ranks_from_lists, user_hr_ndcg

    def gains(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        table = pq.read_table(paths.eval_dir(name, split) / "predictions.parquet").sort_by("row")
        ranks = ranks_from_lists(table.column("items").to_pylist(), table.column("target").to_numpy())
        return (table.column("row").to_numpy(), *user_hr_ndcg(ranks, k))

    rows0, hit0, ndcg0 = gains(before)
    rows1, hit1, ndcg1 = gains(after)
    if not np.array_equal(rows0, rows1):
        raise ValueError(f"{before} and {after} ranked different users on {split}")
    out: dict[str, float] = {"users": len(rows0)}
    for key, d in ((f"ndcg@{k}", ndcg1 - ndcg0), (f"hr@{k}", hit1 - hit0)):
        se = float(d.std(ddof=1) / np.sqrt(len(d)))
        out.update({f"{key}_diff": float(d.mean()), f"{key}_se": se, f"{key}_t": float(d.mean() / se) if se else 0.0})
    out.update(gained_hit=int((hit1 > hit0).sum()), lost_hit=int((hit1 < hit0).sum()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="run folder with data/, sid/ and a finished SFT run (sft/<sft_name>/model)")
    parser.add_argument("--name", default="rl_quality", help="result file name under bench/results/")
    parser.add_argument("--config", default=str(ROOT / "jobs/configs/rl_cpu.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="RLConfig override")
    parser.add_argument("--eval-config", default=str(ROOT / "jobs/configs/evaluate.yaml"))
    parser.add_argument("--eval-set", action="append", default=[], help="EvalConfig override")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()

    paths = RunPaths(args.run)
    cfg = load_config(RLConfig, args.config, [f"run={args.run}", *args.overrides])
    started = time.time()
    rl_model = run_rl(cfg)
    rl_seconds = json.loads((paths.rl_dir(cfg.name) / "stage.json").read_text())["seconds"]
    rows, seconds = {}, {"rl_stage": rl_seconds, "bench_rl_call": round(time.time() - started, 1)}
    for label, checkpoint, name in (("SFT", model_dir_of(cfg), "sft-bench"), ("SFT + GRPO", rl_model, "rl-bench")):
        ecfg = load_config(EvalConfig, args.eval_config, [f"run={args.run}", f"checkpoint={checkpoint}",
                                                          f"split={args.split}", f"name={name}", *args.eval_set])
        metrics = run_evaluate(ecfg)
        rows[label] = {k: v for k, v in metrics.items() if "@" in k or k in ("cc", "users")}
        print(f"{label}: HR@10 {rows[label]['hr@10']:.4f} NDCG@10 {rows[label]['ndcg@10']:.4f} CC {rows[label]['cc']}")
    ratios = {k: round(rows["SFT + GRPO"][k] / rows["SFT"][k], 3) for k in KEYS if rows["SFT"][k]}
    history = json.loads((paths.rl_dir(cfg.name) / "history.json").read_text())
    pair = paired(paths, args.split, "sft-bench", "rl-bench")
    results = {"run": args.run, "split": args.split, "rl_config": to_dict(cfg),
               "rows": rows, "ratios_rl_over_sft": ratios, "paired": pair, "seconds": seconds,
               "valid": history["valid"], "steps": len(history["train"])}
    write_result(args.name, results)
    table = format_table(rows, KEYS)
    text = (f"# GRPO on {args.run} ({args.split}, {rows['SFT']['users']} users, CC "
            f"{rows['SFT']['cc']} / {rows['SFT + GRPO']['cc']})\n\n{table}\n\nSFT + GRPO / SFT: "
            + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items())
            + f"\n\nGRPO: {results['steps']} steps ({rl_seconds:.0f} s in this call; a resumed run counts only its own); valid "
            + ", ".join(f"step {v['step']}: {v[f'valid_ndcg@{cfg.grpo.eval_k}']:.4f}" for v in history["valid"])
            + f"\n\nPaired over the {pair['users']:,} users: NDCG@10 {pair['ndcg@10_diff']:+.4f} (se {pair['ndcg@10_se']:.4f}, "
            f"t {pair['ndcg@10_t']:.1f}); HR@10 {pair['hr@10_diff']:+.4f} (se {pair['hr@10_se']:.4f}; "
            f"{pair['gained_hit']} users gained a hit, {pair['lost_hit']} lost one)\n")
    (RESULTS / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
