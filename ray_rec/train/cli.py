"""``ray-rec sft``: supervised fine-tuning of the generative recommender under Ray Train.

    ray-rec sft --config jobs/configs/sft_smoke.yaml --run runs/demo
    ray-rec sft --config jobs/configs/sft.yaml --set resources.workers=8 --set resources.use_gpu=true
    ray-rec sft --run runs/demo --name sft --set train.backend=ddp     # the same name resumes a run
    ray-rec sft --run runs/demo --name wide --set model.hidden_size=256  # a second run: <run>/sft/wide/

Each run name has its own folder, ``<run>/sft/<name>/``: Ray Train checkpoints, ``inputs/`` (the
tokenizer), ``model/`` (the best checkpoint in Hugging Face format), ``loss.png``, ``history.json`` and
``stage.json``. Evaluation and GRPO read ``<run>/sft/<sft_name>/model`` (``sft_name`` defaults to sft).

Only argparse and the config system are imported here, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse

from ray_rec.cliargs import add_config_args, add_resource_args, config_from_args


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sft", help="SFT of a causal LM on SID tasks (Ray Train TorchTrainer, DeepSpeed ZeRO-2 or DDP)",
        description="Train a causal LM to generate the next item's SID (MiniOneRec's task mix) under Ray Train; "
                    "writes <run>/sft/<name>/model (Hugging Face folder), loss.png, history.json and stage.json.")
    parser.add_argument("--run", help="run folder holding data/ and sid/<method>/; writes sft/<name>/ "
                                      "(config key run)")
    parser.add_argument("--name", help="run name: outputs in <run>/sft/<name>/ (default sft); the same name resumes "
                                       "(config key name)")
    parser.add_argument("--sid-method", dest="sid_method", help="which sid/<method>/codes.parquet (config key sid_method)")
    add_config_args(parser)
    add_resource_args(parser, "Ray Train workers")
    parser.set_defaults(func=_sft)


def _sft(args: argparse.Namespace) -> int:
    from ray_rec.train.config import SFTConfig

    cfg = config_from_args(SFTConfig, args, ["run", "name", "sid_method"])

    from ray_rec.train.run import run_sft

    path = run_sft(cfg)
    print(f"sft: model written to {path}")
    return 0
