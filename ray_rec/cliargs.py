"""Command-line flags to a stage config, the one way every ``ray-rec`` command does it.

Precedence, lowest first: the config dataclass's defaults, the ``--config`` YAML file, the command's
shorthand flags (``--run``, ``--epochs``, ...), then ``--set a.b=value`` overrides. A shorthand flag
names the config key it stands for, dotted for a key inside a section::

    config_from_args(ToyConfig, args, {"epochs": "train.epochs", "run": "run"})
    config_from_args(SFTConfig, args, ["run", "name"])    # flag dest == config key

Only argparse and the config system are imported here, so that ``ray-rec --help`` stays fast; the
stage command modules (``ray_rec/<stage>/cli.py``) import this, never :mod:`ray_rec.cli`.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from ray_rec.config import load_config, read_yaml

T = TypeVar("T")


def add_config_args(parser: argparse.ArgumentParser, default_config: str | None = None) -> None:
    """The ``--config`` / ``--set`` pair every stage command takes."""
    parser.add_argument("--config", default=default_config, metavar="YAML",
                        help="YAML config file (see jobs/configs/)" + (f"; default {default_config}" if default_config else ""))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.lr=3e-4 (repeatable)")


RESOURCE_FLAGS = {"workers": "resources.workers", "cpus_per_worker": "resources.cpus_per_worker",
                  "threads_per_worker": "resources.threads_per_worker", "use_gpu": "resources.use_gpu"}


def add_resource_args(parser: argparse.ArgumentParser, what: str = "Ray Train workers") -> None:
    """The shorthands of the ``resources`` section, the same on every stage command."""
    g = parser.add_argument_group("resources (shorthands for resources.*)")
    g.add_argument("--workers", "--num-workers", "--num-actors", dest="workers", type=int,
                   help=f"{what} (resources.workers)")
    g.add_argument("--cpus-per-worker", type=float, help="logical CPUs Ray reserves per worker (resources.cpus_per_worker)")
    g.add_argument("--threads-per-worker", type=int, help="torch threads per worker (resources.threads_per_worker)")
    g.add_argument("--use-gpu", action="store_true", default=None, help="one GPU per worker (resources.use_gpu)")


def flags_to_dict(args: argparse.Namespace, flags: Mapping[str, str] | Iterable[str]) -> dict[str, Any]:
    """The shorthand flags given on the command line (not None) as a nested dict of config keys."""
    keys = dict(flags) if isinstance(flags, Mapping) else {name: name for name in flags}
    out: dict[str, Any] = {}
    for dest, key in keys.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        *sections, leaf = key.split(".")
        node = out
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = value
    return out


def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` laid over ``base``, section by section."""
    merged = dict(base)
    for k, v in top.items():
        merged[k] = merge(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


def config_from_args(cls: type[T], args: argparse.Namespace,
                     flags: Mapping[str, str] | Iterable[str] = ()) -> T:
    """Config ``cls`` from ``args.config``, then the shorthand ``flags``, then ``args.overrides``."""
    data = read_yaml(args.config) if getattr(args, "config", None) else {}
    given = merge(flags_to_dict(args, RESOURCE_FLAGS), flags_to_dict(args, flags))
    cfg = load_config(cls, None, list(getattr(args, "overrides", []) or []), base=merge(data, given))
    if getattr(cfg, "run", None):
        from ray_rec.storage import storage_of

        storage_of(cfg.run).check()  # an unusable run folder is refused before any stage starts
    return cfg
