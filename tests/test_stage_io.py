"""Atomic writes leave nothing behind on failure; stage bookkeeping detects config changes."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet  # noqa: F401  (pa.parquet)
import pytest

from ray_rec.config import option
from ray_rec.io import atomic_dir, atomic_path, write_parquet
from ray_rec.stage import is_done, mark_done


@dataclass(frozen=True)
class Cfg:
    seed: int = option(0, help="seed")


def test_atomic_path_failure_leaves_nothing(tmp_path):
    target = tmp_path / "a.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_and_cleans(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_dir(target) as tmp:
        (tmp / "w").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "w").write_text("2")
            raise RuntimeError("boom")
    assert (target / "w").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_write_parquet_casts_schema(tmp_path):
    schema = pa.schema([("x", pa.int64())])
    path = write_parquet(pa.table({"x": pa.array([1, 2], pa.int32())}), tmp_path / "t.parquet", schema)
    assert pa.parquet.read_table(path).schema == schema


def test_stage_done_tracks_config(tmp_path):
    assert not is_done(tmp_path, Cfg())
    mark_done(tmp_path, Cfg(), time.time(), items=3)
    assert is_done(tmp_path, Cfg())
    assert not is_done(tmp_path, Cfg(seed=1))


def test_atomic_writes_follow_the_umask(tmp_path):
    import os
    import stat

    from ray_rec.io import atomic_dir, write_json

    old = os.umask(0o022)
    try:
        path = write_json({"a": 1}, tmp_path / "x.json")
        with atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "f").write_text("1")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o755
