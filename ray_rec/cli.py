"""The one command line: ``ray-rec <group> <command> [--config F] [--set a.b=v ...]``.

Each group lives beside its stage (``ray_rec/<stage>/cli.py``) and exposes ``register(subparsers)``;
the groups come from the stage registry (:mod:`ray_rec.stages`), so a new stage's command appears
here without an edit. Those modules import only argparse, :mod:`ray_rec.cliargs` and configs so that
``--help`` stays fast. Bad input (:class:`ray_rec.errors.InputError`) is reported in one sentence
with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ray_rec.errors import InputError
from ray_rec.runtime import setup_env
from ray_rec.stages import cli_modules


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ray-rec",
        description="Generative recommendation (semantic IDs + a causal LM) on Ray.",
    )
    sub = parser.add_subparsers(dest="group", metavar="<group>", required=True)
    for module in cli_modules():
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # First, before any command module imports ray: a local Ray must come up bound to 127.0.0.1,
    # whichever command starts it (runtime.setup_env; issue: toy and sasrec once imported ray earlier).
    setup_env(detect_gpu=False)
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
