"""Stage configs: frozen dataclasses loaded from commented YAML with ``--set a.b=v`` overrides.

Every stage has exactly one config dataclass built with :func:`option` so that each field
carries a help string. :func:`load_config` merges, in order, the dataclass defaults, a YAML file
and ``--set`` overrides, refuses unknown keys (listing the valid ones) and coerces values to the
field's declared type, so a typo fails before any Ray work starts.

Example::

    cfg = load_config(ToyTrainConfig, "jobs/configs/toy.yaml", ["train.lr=3e-4"])
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from ray_rec.errors import InputError

T = TypeVar("T")


class ConfigError(InputError):
    """A config value or key is invalid; the message says which and how to fix it."""


def option(default: Any = dataclasses.MISSING, help: str = "", affects_result: bool = True, **kwargs: Any) -> Any:
    """A dataclass field with a help string (mutable defaults are wrapped in a factory).

    ``affects_result=False`` marks a field that changes how a stage runs but not what it writes (worker
    counts, threads, batch sizes of inference, the run folder itself): :mod:`ray_rec.stage` leaves it out
    of the fingerprint that decides whether a finished stage is still up to date.
    """
    if not help:
        raise TypeError("every config field needs a help string")
    metadata = {"help": help, "affects_result": affects_result}
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


# Keys that moved into the ``resources`` section every stage config has (ray_rec/resources.py).
MOVED_KEYS = {"scaling": "resources (workers, cpus_per_worker, threads_per_worker, use_gpu; "
                         "max_failures is now train.max_failures)",
              "num_workers": "resources.workers", "num_actors": "resources.workers",
              "cpus_per_actor": "resources.cpus_per_worker", "cpus_per_worker": "resources.cpus_per_worker",
              "threads": "resources.threads_per_worker", "threads_per_actor": "resources.threads_per_worker",
              "use_gpu": "resources.use_gpu", "device": "resources.use_gpu", "gpus_per_actor": "resources.use_gpu"}


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Coerce a YAML-parsed value to the annotated type ``tp``; raise ConfigError naming ``where``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of {list(allowed)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, prefix=f"{where}.")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r} (write it as [a, b, c])")
        (item_tp, *_) = get_args(tp) or (Any,)
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    if tp is Path:
        return Path(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build config ``cls`` from a (possibly nested) dict, refusing unknown keys."""
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        moved = [f"{prefix + k} is now {prefix + MOVED_KEYS[k]}" for k in unknown
                 if k in MOVED_KEYS and "resources" in names]
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
            f"valid keys{' under ' + prefix.rstrip('.') if prefix else ''}: {', '.join(names)}"
            + (f" ({'; '.join(moved)})" if moved else "")
        )
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    kwargs = {k: _coerce(_over_default(v, defaults[k]), hints[k], prefix + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{cls.__name__}: {exc}") from None


def _over_default(value: Any, default: Any) -> Any:
    """A mapping given for a section whose default is a section instance is laid over that instance's
    values (so a stage may default a shared section, e.g. RLConfig's ``train``, to other values)."""
    if isinstance(value, dict) and dataclasses.is_dataclass(default) and not isinstance(default, type):
        return {**{f.name: getattr(default, f.name) for f in dataclasses.fields(default)}, **value}
    return value


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain YAML-able data (for manifests and run folders)."""
    def plain(v: Any) -> Any:
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return {k: plain(v) for k, v in dataclasses.asdict(cfg).items()}


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=3"`` -> (["a", "b"], 3); the value is parsed as YAML (so 1e-3, true, [1,2] work)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value (for example train.lr=3e-4)")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"override {text!r} has an empty key")
    value = yaml.safe_load(raw) if raw.strip() else ""
    # YAML 1.1 reads "3e-4" as a string; numbers in scientific notation are meant as floats.
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value.lower() for c in "e.") and not value.isalpha() else value
        except ValueError:
            pass
    return key.strip().split("."), value


def _set_nested(data: dict[str, Any], keys: list[str], value: Any) -> None:
    for k in keys[:-1]:
        data = data.setdefault(k, {})
        if not isinstance(data, dict):
            raise ConfigError(f"cannot set {'.'.join(keys)}: {k} is not a section")
    data[keys[-1]] = value


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of config keys")
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> T:
    """Defaults <- ``base`` dict <- YAML file at ``path`` <- ``overrides`` (``a.b=v`` strings)."""
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        data.update(read_yaml(path))
    for text in overrides or []:
        keys, value = parse_override(text)
        _set_nested(data, keys, value)
    try:
        return from_dict(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path else str(exc)) from None
