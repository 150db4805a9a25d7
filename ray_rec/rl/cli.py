"""``ray-rec rl``: GRPO fine-tuning of an SFT model under Ray Train.

    ray-rec rl --config jobs/configs/rl_smoke.yaml --run runs/demo
    ray-rec rl --config jobs/configs/rl.yaml --set resources.workers=8 --set resources.use_gpu=true
    ray-rec rl --run runs/demo --set grpo.cf_weight=0.5      # add the SASRec reward
    ray-rec rl --run runs/demo --set sft_name=wide           # start from <run>/sft/wide/model

The policy starts from ``<run>/sft/<sft_name>/model`` (``sft_name`` defaults to sft) unless ``model`` is
set; each run name writes ``<run>/rl/<name>/``: Ray Train checkpoints, ``model/`` (the best checkpoint),
``curves.png``, ``history.json`` and ``stage.json``.

Only argparse and the config system are imported here, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse

from ray_rec.cliargs import add_config_args, add_resource_args, config_from_args


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "rl", help="GRPO with constrained beam-search rollouts and ranking rewards (Ray Train, DeepSpeed ZeRO-2 or DDP)",
        description="Fine-tune <run>/sft/<sft_name>/model with GRPO: each user's rollouts are the best SIDs of "
                    "constrained beam search, rewarded for the right next item and by rank; writes "
                    "<run>/rl/<name>/model (evaluate it with `ray-rec evaluate --checkpoint <run>/rl/<name>/model`), "
                    "curves.png, history.json and stage.json.")
    parser.add_argument("--run", help="run folder holding data/, sid/<method>/ and sft/<sft_name>/model; "
                                      "writes rl/<name>/ (config key run)")
    parser.add_argument("--name", help="run name: outputs in <run>/rl/<name>/ (default grpo); the same name resumes "
                                       "(config key name)")
    parser.add_argument("--model", help="starting Hugging Face folder (config key model; default "
                                        "<run>/sft/<sft_name>/model, --set sft_name=NAME picks the SFT run, "
                                        "default sft)")
    add_config_args(parser)
    add_resource_args(parser, "Ray Train workers")
    parser.set_defaults(func=_rl)


def _rl(args: argparse.Namespace) -> int:
    from ray_rec.rl.config import RLConfig

    cfg = config_from_args(RLConfig, args, ["run", "name", "model"])

    from ray_rec.rl.run import run_rl

    path = run_rl(cfg)
    print(f"rl: model written to {path}")
    return 0
