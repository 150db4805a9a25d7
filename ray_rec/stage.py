"""The one freshness rule: a finished stage is not redone while nothing it depends on changed.

Each stage writes ``<out_dir>/stage.json`` as its *last* step, after its artifacts were renamed into
place. That record holds the stage's **fingerprint**, a hash of

* its config, without the fields declared ``option(..., affects_result=False)`` (worker counts,
  threads, the run folder itself) and with paths inside the run folder written relative to it, so the
  same stage run from the pipeline (absolute run path) and from its own command (relative) agree;
* the **content hash of each input's stage record**: every file or folder the stage reads is traced to
  the ``stage.json`` of the stage that wrote it, and that file's bytes are hashed. A stage that really
  reran writes a new record (its finish time differs) and so makes everything downstream stale; a
  stage that was skipped leaves its record, and its readers, as they were. Inputs made outside any
  stage (a local Hugging Face model, an ``index.json``) are hashed by content.

:func:`is_done` is true only when the record exists with the same fingerprint, so a crashed, changed
or stale stage reruns, whichever entry point (``ray-rec <stage>`` or ``ray-rec pipeline run``) asks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ray_rec.config import to_dict
from ray_rec.io import file_sha256, write_json

STAGE_FILE = "stage.json"
_SMALL_FILE = 1 << 20  # files of an external input folder hashed by content below this size, by size above


def result_fields(cfg: Any, root: Path | None = None) -> dict[str, Any]:
    """The fields of config ``cfg`` that change a stage's outputs, as plain data.

    Fields declared with ``affects_result=False`` are left out, in nested sections too; a string naming
    a path inside the run folder ``root`` (default ``cfg.run``) is written as ``<run>/relative/path``.
    """
    if root is None and hasattr(cfg, "run"):
        from ray_rec.paths import RunPaths

        root = RunPaths(cfg.run).root

    def plain(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                    if f.metadata.get("affects_result", True)}
        if isinstance(obj, (list, tuple)):
            return [plain(x) for x in obj]
        if isinstance(obj, dict):
            return {k: plain(v) for k, v in obj.items()}
        if isinstance(obj, (str, Path)):
            return _relative(str(obj), root)
        return obj

    return plain(cfg)


def _relative(text: str, root: Path | None) -> str:
    if root is None or "/" not in text or "\n" in text or "{" in text:
        return text
    try:
        rel = Path(text).expanduser().resolve().relative_to(root)
    except (ValueError, OSError, RuntimeError):
        return text
    return f"<run>/{rel.as_posix()}"


def stage_record_of(path: Path) -> Path | None:
    """The ``stage.json`` of the stage that wrote ``path``: in ``path`` itself (a stage folder) or in
    the nearest folder above it; None when no stage wrote it."""
    path = Path(path).expanduser().resolve()
    for folder in (path, *path.parents):
        record = folder / STAGE_FILE
        if record.is_file():
            return record
    return None


def input_hash(path: str | Path) -> str:
    """Content hash identifying one input: its stage record's bytes, or (made outside any stage) the
    input's own content (by size and modification time for a URI); ``missing`` when it does not exist."""
    from ray_rec.nodecache import input_info
    from ray_rec.storage import is_uri

    if is_uri(path):
        info = input_info(path)
        return "missing" if info is None else _sha256(f"{path}:{info}".encode())
    path = Path(path).expanduser()
    record = stage_record_of(path)
    if record is not None:
        return _sha256(record.read_bytes())
    if path.is_file():
        return file_sha256(path)
    if path.is_dir():
        parts = []
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            size = f.stat().st_size
            parts.append(f"{f.relative_to(path).as_posix()}:{size}:"
                         + (file_sha256(f) if size < _SMALL_FILE else ""))
        return _sha256("\n".join(parts).encode())
    return "missing"


def input_hashes(inputs: Iterable[str | Path]) -> dict[str, str]:
    """Input path -> :func:`input_hash`, each input read once."""
    return {str(p): input_hash(p) for p in inputs}


def fingerprint(cfg: Any, inputs: Iterable[str | Path] = (), unused: tuple[str, ...] = ()) -> str:
    """Hash of the result-affecting config and the inputs' content hashes (see the module docstring);
    ``unused``: top-level sections of a config shared by several stages that this stage never reads."""
    return _fingerprint(cfg, input_hashes(inputs), unused)


def _fingerprint(cfg: Any, hashes: dict[str, str], unused: tuple[str, ...]) -> str:
    fields = {k: v for k, v in result_fields(cfg).items() if k not in unused}
    data = {"config": fields, "inputs": sorted(hashes.values())}
    return _sha256(json.dumps(data, sort_keys=True, default=str).encode())[:16]


def read_record(out_dir: str | Path) -> dict[str, Any] | None:
    """``<out_dir>/stage.json``; None when there is none, ``{}`` when it cannot be read (a torn record
    vouches for nothing)."""
    path = Path(out_dir) / STAGE_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


_READ = object()


def status(out_dir: str | Path, cfg: Any, inputs: Iterable[str | Path] = (),
           unused: tuple[str, ...] = (), record: Any = _READ) -> tuple[bool, bool]:
    """(done, inputs_changed), hashing the inputs once. ``done``: ``out_dir`` holds a finished stage with
    this config and these very inputs. ``inputs_changed``: it finished before on other inputs (or its
    record is torn). ``record``: the stage's record when it was read elsewhere (from storage)."""
    if record is _READ:
        record = read_record(out_dir)
    if record is None:
        return False, False
    hashes = input_hashes(inputs)
    done = record.get("fingerprint") == _fingerprint(cfg, hashes, unused)
    changed = sorted((record.get("inputs") or {}).values()) != sorted(hashes.values()) if record else True
    return done, changed


def is_done(out_dir: str | Path, cfg: Any, inputs: Iterable[str | Path] = (), unused: tuple[str, ...] = ()) -> bool:
    """True when ``out_dir`` holds a finished stage with this config and these very inputs."""
    return status(out_dir, cfg, inputs, unused)[0]


def mark_done(out_dir: str | Path, cfg: Any, started: float, inputs: Iterable[str | Path] = (),
              unused: tuple[str, ...] = (), **summary: Any) -> Path:
    """Record the finished stage (call after every artifact is in place)."""
    hashes = input_hashes(inputs)
    return write_json({
        "config": to_dict(cfg),
        "fingerprint": _fingerprint(cfg, hashes, unused),
        "inputs": hashes,
        "record_id": uuid.uuid4().hex,  # a rerun always writes a new record, so its readers go stale
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.time() - started, 3),
        **summary,
    }, Path(out_dir) / STAGE_FILE)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
