"""Stage bookkeeping: a stage whose outputs already exist for the same config is not redone.

Each stage writes ``<out_dir>/stage.json`` (its config, the config's hash, timings, counts) as the
*last* step, after its artifacts were renamed into place. :func:`is_done` is true only when that
file exists with the same config hash, so a crashed or changed stage reruns.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from ray_rec.config import to_dict
from ray_rec.io import write_json

STAGE_FILE = "stage.json"


def config_hash(cfg: Any, ignore: tuple[str, ...] = ()) -> str:
    """Stable hash of a config dataclass (fields in ``ignore`` left out, e.g. worker counts)."""
    data = {k: v for k, v in to_dict(cfg).items() if k not in ignore}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def is_done(out_dir: str | Path, cfg: Any, ignore: tuple[str, ...] = ()) -> bool:
    """True when ``out_dir`` holds a finished stage made with the same config."""
    path = Path(out_dir) / STAGE_FILE
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("config_hash") == config_hash(cfg, ignore)
    except (OSError, json.JSONDecodeError):
        return False


def mark_done(out_dir: str | Path, cfg: Any, started: float, ignore: tuple[str, ...] = (),
              **summary: Any) -> Path:
    """Record the finished stage (call after every artifact is in place)."""
    return write_json({
        "config": to_dict(cfg),
        "config_hash": config_hash(cfg, ignore),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.time() - started, 3),
        **summary,
    }, Path(out_dir) / STAGE_FILE)
