"""Several SFT/RL checkpoints of one run ranked on the same users, with per-user paired differences.

Each ``NAME=CHECKPOINT`` is evaluated through the same evaluation as everywhere else (constrained
beam search, ``jobs/configs/evaluate.yaml``; an evaluation already done under that name for that
checkpoint is reused), then every model after the first is compared with the first user by user:
mean HR@10 / NDCG@10 difference, its standard error and t, users who gained or lost a hit. A
difference of a few thousandths between two runs only means something with its t beside it.
Writes ``bench/results/<name>.json`` and ``.md``.

Run:  .venv/bin/python bench/paired.py --run /tmp/sasrec_bench/scientific-leave_one_out --name paired_sci \\
          --model plain=<run>/sft/a/checkpoint_002470 --model distilled=<run>/sft/b/checkpoint_002340 \\
          [--sid-method sasrec_cf64] [--eval-set resources.workers=2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import RESULTS, write_result  # noqa: E402
from bench.rl_quality import KEYS, paired  # noqa: E402
from ray_rec.config import load_config  # noqa: E402
from ray_rec.eval.config import EvalConfig  # noqa: E402
from ray_rec.eval.evaluate import run_evaluate  # noqa: E402
from ray_rec.metrics import format_table  # noqa: E402
from ray_rec.paths import RunPaths  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="run folder holding data/, sid/ and the checkpoints")
    parser.add_argument("--model", action="append", required=True, metavar="NAME=CHECKPOINT",
                        help="a model to rank (repeat); the first is the one the others are compared with")
    parser.add_argument("--sid-method", default="", help="sid/<method> the models were trained on (default: "
                                                         "what each checkpoint records)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--name", required=True, help="bench/results/<name>.json")
    parser.add_argument("--eval-config", default=str(ROOT / "jobs/configs/evaluate.yaml"))
    parser.add_argument("--eval-set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    models = dict(m.split("=", 1) for m in args.model)
    if len(models) < 2:
        parser.error("give at least two --model NAME=CHECKPOINT")
    paths = RunPaths(args.run)
    rows = {}
    for name, checkpoint in models.items():
        cfg = load_config(EvalConfig, args.eval_config, [f"run={args.run}", f"name={name}", f"split={args.split}",
                                                         f"checkpoint={checkpoint}", f"sid_method={args.sid_method}",
                                                         *args.eval_set])
        rows[name] = run_evaluate(cfg)
    first, *others = models
    pairs = {f"{o} - {first}": paired(paths, args.split, first, o) for o in others}
    table = format_table(rows, KEYS)
    lines = [f"# {args.split} of {args.run} ({rows[first]['users']} users)", "", table, ""]
    for key, p in pairs.items():
        lines.append(f"{key}: NDCG@10 {p['ndcg@10_diff']:+.4f} (se {p['ndcg@10_se']:.4f}, t {p['ndcg@10_t']:.1f}), "
                     f"HR@10 {p['hr@10_diff']:+.4f} (se {p['hr@10_se']:.4f}, t {p['hr@10_t']:.1f}); "
                     f"{p['gained_hit']} users gained a hit, {p['lost_hit']} lost one")
    print("\n".join(lines))
    write_result(args.name, {"models": models, "rows": rows, "paired": pairs})
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
