"""``ray-rec toy data|train|tune``: the toy sequential recommender from the command line.

Examples::

    ray-rec toy data --out runs/toy.jsonl --num-users 1000 --num-items 200 --max-len 50
    ray-rec toy train --dataset toy --num-items 200 --max-len 50 --epochs 3
    ray-rec toy train --dataset jsonl --train-path runs/toy.jsonl --grad-accum 2 --batch-size 128
    ray-rec toy tune --config jobs/configs/toy.yaml --set tune.num_samples=4

Flags are shorthands for config keys (``--epochs`` is ``train.epochs``); the order of precedence is
config defaults < ``--config`` YAML < flags < ``--set key=value``. Only argparse and the config
system are imported here so that ``--help`` is fast.
"""

from __future__ import annotations

import argparse
from typing import Any

from ray_rec.cliargs import add_config_args, add_resource_args, config_from_args

# flag dest -> dotted config key
_FLAG_KEYS = {
    "run": "run", "name": "name", "seed": "seed",
    "dataset": "data.dataset", "train_path": "data.train_path", "num_items": "data.num_items",
    "num_users": "data.num_users", "max_len": "data.max_len",
    "embed_dim": "model.embed_dim", "pooling": "model.pooling",
    "epochs": "train.epochs", "batch_size": "train.batch_size", "grad_accum": "train.grad_accum",
    "lr": "train.lr", "amp": "train.amp",
    "num_samples": "tune.num_samples", "tune_name": "tune.name",
}


def _add_common(p: argparse.ArgumentParser) -> None:
    add_config_args(p)
    add_resource_args(p, "Ray Train workers (DDP over gloo; NCCL with --use-gpu)")
    g = p.add_argument_group("shorthands for config keys")
    g.add_argument("--run", help="run folder (run); outputs go to <run>/toy/")
    g.add_argument("--name", help="run name (name); the same name resumes a run")
    g.add_argument("--seed", type=int, help="seed (seed)")
    g.add_argument("--dataset", choices=["toy", "jsonl"], help="built-in toy data or a JSONL file (data.dataset)")
    g.add_argument("--train-path", help="JSONL file of user sequences (data.train_path)")
    g.add_argument("--num-items", type=int, help="catalogue size, ids 1..N (data.num_items)")
    g.add_argument("--num-users", type=int, help="toy users (data.num_users)")
    g.add_argument("--max-len", type=int, help="history length (data.max_len)")
    g.add_argument("--embed-dim", type=int, help="embedding size (model.embed_dim)")
    g.add_argument("--pooling", choices=["mean", "last"], help="history pooling (model.pooling)")
    g.add_argument("--epochs", type=int, help="epochs (train.epochs)")
    g.add_argument("--batch-size", type=int, help="micro-batch size per worker (train.batch_size)")
    g.add_argument("--grad-accum", type=int, help="micro-batches per optimizer step (train.grad_accum)")
    g.add_argument("--lr", type=float, help="learning rate (train.lr)")
    g.add_argument("--amp", action="store_true", default=None, help="mixed precision on CUDA (train.amp)")


def register(subparsers: Any) -> None:
    toy = subparsers.add_parser("toy", help="toy sequential recommender (Ray Train + Ray Tune)",
                                description="The toy next-item recommender: embedding, pooling, linear layer.")
    sub = toy.add_subparsers(dest="command", metavar="<command>", required=True)

    data = sub.add_parser("data", help="write a toy JSONL data set (one user per line)")
    data.add_argument("--out", required=True, help="JSONL file to write")
    data.add_argument("--num-users", type=int, default=1000, help="distinct simulated users")
    data.add_argument("--num-items", type=int, default=200, help="catalogue size (ids 1..N)")
    data.add_argument("--max-len", type=int, default=50, help="longest sequence (at least 3)")
    data.add_argument("--n", type=int, default=None,
                      help="sequences (lines) to write; user i %% num-users owns line i (default: num-users)")
    data.add_argument("--seed", type=int, default=0, help="generator seed")
    data.set_defaults(func=_data)

    train = sub.add_parser("train", help="train under Ray Train TorchTrainer, report HR/NDCG@K")
    _add_common(train)
    train.set_defaults(func=_train)

    tune = sub.add_parser("tune", help="Ray Tune sweep with ASHA on ndcg@10")
    _add_common(tune)
    tune.add_argument("--num-samples", type=int, help="trials (tune.num_samples)")
    tune.add_argument("--tune-name", help="sweep name (tune.name)")
    tune.set_defaults(func=_tune)


def config_from_cli(args: argparse.Namespace):
    """ToyConfig from ``--config``, then the shorthand flags, then ``--set`` overrides."""
    from ray_rec.toy.config import ToyConfig

    return config_from_args(ToyConfig, args, _FLAG_KEYS)


def _data(args: argparse.Namespace) -> int:
    from ray_rec.config import ConfigError
    from ray_rec.toy.config import ToyDataConfig
    from ray_rec.toy.data import make_toy_sequences, write_jsonl

    cfg = ToyDataConfig(num_users=args.num_users, num_items=args.num_items, max_seq_len=args.max_len,
                        min_seq_len=min(5, args.max_len))
    n = args.n if args.n is not None else args.num_users
    if n < 1:
        raise ConfigError(f"--n must be >= 1, got {n}")
    seqs = make_toy_sequences(cfg, seed=args.seed, n=n)
    write_jsonl(seqs, args.out, num_users=args.num_users)
    print(f"wrote {len(seqs)} sequences over {args.num_items} items to {args.out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from ray_rec.toy.train import run_toy_train

    run_toy_train(config_from_cli(args))
    return 0


def _tune(args: argparse.Namespace) -> int:
    from ray_rec.toy.tune import run_toy_tune

    run_toy_tune(config_from_cli(args))
    return 0
