"""``ray-rec baseline sasrec``: train the SASRec baseline on a run folder's splits and score it.

Examples::

    ray-rec baseline sasrec --run runs/demo
    ray-rec baseline sasrec --config jobs/configs/sasrec.yaml --set max_len=20 --workers 1

Flags are shorthands for config keys; precedence is defaults < ``--config`` YAML < flags < ``--set``.
Only argparse and the config system are imported here so that ``--help`` is fast.
"""

from __future__ import annotations

import argparse
from typing import Any

from ray_rec.cliargs import add_config_args, add_resource_args, config_from_args


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("baseline", help="classic baselines on the same splits (SASRec)",
                                  description="Classic sequential recommenders trained under Ray Train.")
    sub = group.add_subparsers(dest="command", metavar="<command>", required=True)
    p = sub.add_parser("sasrec", help="train SASRec, write baseline/sasrec/metrics.{json,md}",
                       description="Train SASRec (full softmax, early stopping on valid NDCG@10) under Ray Train "
                                   "and score valid/test with full ranking over the catalogue.")
    add_config_args(p)
    add_resource_args(p)
    p.add_argument("--run", help="run folder holding data/ (run)")
    p.add_argument("--force", action="store_true", default=None, help="retrain even if finished (force)")
    p.set_defaults(func=_sasrec)


def _sasrec(args: argparse.Namespace) -> int:
    from ray_rec.baseline.config import SASRecConfig

    cfg = config_from_args(SASRecConfig, args, ["run", "force"])
    from ray_rec.baseline.train import run_sasrec
    from ray_rec.metrics import format_table

    metrics = run_sasrec(cfg)
    print(format_table({f"SASRec ({s})": metrics[s] for s in ("valid", "test")}, list(metrics["test"])))
    print(f"results in {metrics['model_dir'].rsplit('/', 1)[0]}")
    return 0
