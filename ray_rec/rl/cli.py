"""``ray-rec rl``: GRPO fine-tuning of an SFT model under Ray Train.

    ray-rec rl --config jobs/configs/rl_smoke.yaml --run runs/demo
    ray-rec rl --config jobs/configs/rl.yaml --set scaling.num_workers=8 --set scaling.use_gpu=true
    ray-rec rl --run runs/demo --set grpo.cf_weight=0.5      # add the SASRec reward

Only argparse and the config system are imported here, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse

from ray_rec.cli import add_config_args, config_from_args


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "rl", help="GRPO with constrained beam-search rollouts and ranking rewards (Ray Train, DeepSpeed ZeRO-2 or DDP)",
        description="Fine-tune <run>/sft/model with GRPO: each user's rollouts are the best SIDs of constrained beam "
                    "search, rewarded for the right next item and by rank; writes <run>/rl/model (evaluate it with "
                    "`ray-rec evaluate --checkpoint <run>/rl/model`), <run>/rl/curves.png and <run>/rl/stage.json.")
    parser.add_argument("--run", help="run folder holding data/, sid/<method>/ and sft/model (config key run)")
    parser.add_argument("--name", help="Ray Train run name; the same name resumes (config key name)")
    parser.add_argument("--model", help="starting Hugging Face folder (config key model; default <run>/sft/model)")
    add_config_args(parser)
    parser.set_defaults(func=_rl)


def _rl(args: argparse.Namespace) -> int:
    from ray_rec.rl.config import RLConfig

    cfg = config_from_args(RLConfig, args, base={k: getattr(args, k) for k in ("run", "name", "model")})

    from ray_rec.rl.run import run_rl

    path = run_rl(cfg)
    print(f"rl: model written to {path}")
    return 0
