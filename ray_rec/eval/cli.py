"""``ray-rec evaluate``: constrained beam-search evaluation of an SFT checkpoint on one split.

With no ``--checkpoint`` it scores ``<run>/sft/<sft_name>/model`` (``sft_name`` defaults to sft); results go
to ``<run>/eval/<name>/<split>/``.

    ray-rec evaluate --run runs/demo --split test
    ray-rec evaluate --checkpoint runs/demo/rl/grpo/model --run runs/demo --name grpo --split valid
    ray-rec evaluate --run runs/demo --set sft_name=wide --name wide   # SFT run "wide": <run>/sft/wide/model
    ray-rec evaluate --config jobs/configs/evaluate.yaml --use-gpu --workers 4

Only argparse and the config are imported here, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse

from ray_rec.cliargs import add_config_args, add_resource_args, config_from_args


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="HR@K / NDCG@K of a generative model by constrained beam search on Ray",
        description="Score a checkpoint on a split with constrained beam search (Ray Data actor pool); "
                    "writes <run>/eval/<name>/<split>/metrics.{json,md} and predictions.parquet.")
    parser.add_argument("--run", help="run folder (default from the config: runs/default)")
    parser.add_argument("--checkpoint", help="Hugging Face model folder (default <run>/sft/<sft_name>/model)")
    parser.add_argument("--split", choices=["train", "valid", "test"], help="split to score (default test)")
    parser.add_argument("--name", help="results name: <run>/eval/<name>/<split>/ (default sft)")
    parser.add_argument("--sft-name", dest="sft_name", help="SFT run whose model is scored when --checkpoint is "
                                                            "not given (default sft)")
    add_config_args(parser)
    add_resource_args(parser, "beam-search actors, each loading the checkpoint once")
    parser.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from ray_rec.eval.config import EvalConfig

    cfg = config_from_args(EvalConfig, args, ["run", "checkpoint", "sft_name", "split", "name"])

    from ray_rec.eval.evaluate import run_evaluate

    result = run_evaluate(cfg)
    keys = [f"{m}@{k}" for k in cfg.ks for m in ("hr", "ndcg")]
    print(f"{cfg.name} on {cfg.split}: {result['users']} users, CC={result['cc']}")
    for key in keys:
        print(f"  {key:>8} {result[key]:.4f}")
    return 0
