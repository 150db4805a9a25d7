"""The one command line: ``ray-rec <group> <command> [--config F] [--set a.b=v ...]``.

Each group lives beside its stage (``ray_rec/<stage>/cli.py``) and exposes ``register(subparsers)``;
those modules import only argparse and configs so that ``--help`` stays fast. Bad input
(:class:`ray_rec.errors.InputError`) is reported in one sentence with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any, TypeVar

from ray_rec.config import load_config
from ray_rec.errors import InputError

T = TypeVar("T")

# group name -> module with register(subparsers)
GROUPS = {
    "data": "ray_rec.data.cli",
    "baseline": "ray_rec.baseline.cli",
    "toy": "ray_rec.toy.cli",
    "evaluate": "ray_rec.eval.cli",
    "sft": "ray_rec.train.cli",
    "rl": "ray_rec.rl.cli",
    "sid": "ray_rec.sid.cli",
    "pipeline": "ray_rec.pipeline.cli",
}


def add_config_args(parser: argparse.ArgumentParser, default_config: str | None = None) -> None:
    """The ``--config`` / ``--set`` pair every stage command takes."""
    parser.add_argument("--config", default=default_config, metavar="YAML",
                        help="YAML config file (see jobs/configs/)" + (f"; default {default_config}" if default_config else ""))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.lr=3e-4 (repeatable)")


def config_from_args(cls: type[T], args: argparse.Namespace, base: dict[str, Any] | None = None) -> T:
    """Load ``cls`` from ``args.config``, then ``base`` (flags given on the command line), then ``--set``."""
    overrides = list(getattr(args, "overrides", []) or [])
    data = {}
    if getattr(args, "config", None):
        from ray_rec.config import read_yaml
        data.update(read_yaml(args.config))
    data.update({k: v for k, v in (base or {}).items() if v is not None})
    return load_config(cls, None, overrides, base=data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ray-rec",
        description="Generative recommendation (semantic IDs + a causal LM) on Ray.",
    )
    sub = parser.add_subparsers(dest="group", metavar="<group>", required=True)
    for module in GROUPS.values():
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except InputError as exc:
        print(f"ray-rec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ray-rec: interrupted; no partial artifact was written", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
