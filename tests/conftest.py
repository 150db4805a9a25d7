"""Shared fixtures: the project environment, a 2-CPU local Ray, the real data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ray_rec.runtime import setup_env

setup_env()
# Each test process and Ray worker uses one torch thread: two processes on 2 cores thrash otherwise.
os.environ.setdefault("OMP_NUM_THREADS", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, which the tests read real data sets from (never copied into the project)."""
    if not SHARED_DATA.is_dir():
        raise FileNotFoundError(f"real data expected at {SHARED_DATA} (the shared/ folder beside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_start_2_cpus():
    """A local Ray for the whole session. 4 logical CPUs over 2 cores: Ray Train workers at
    1 CPU each plus a Ray Data pipeline otherwise deadlock for lack of CPU slots."""
    import ray

    from ray_rec.runtime import init_ray

    if not ray.is_initialized():
        init_ray(num_cpus=4, dashboard=False)
    yield ray
    # left running for later tests; pytest's exit shuts it down


def pytest_sessionfinish(session, exitstatus):
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except Exception:
        pass


@pytest.fixture(scope="session")
def s3_server():
    """An S3-compatible server (moto) on 127.0.0.1 for the whole session; tests make their own buckets."""
    from multinode import MotoServer

    with MotoServer() as server:
        yield server


@pytest.fixture
def s3_run(s3_server, monkeypatch, tmp_path):
    """A fresh bucket on the S3 server and this process pointed at it (the standard AWS variables), with
    a private node cache; ``s3_run.uri`` is a run folder in the bucket."""
    import types
    import uuid

    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RAY_REC_CACHE", str(tmp_path / "cache"))
    bucket = f"test-{uuid.uuid4().hex[:10]}"
    s3_server.create_bucket(bucket)
    return types.SimpleNamespace(server=s3_server, bucket=bucket, uri=f"s3://{bucket}/run",
                                 cache=tmp_path / "cache")


SMOKE_PIPELINE = Path(__file__).resolve().parents[1] / "jobs" / "configs" / "pipeline_smoke.yaml"


@pytest.fixture(scope="session")
def smoke_pipeline(ray_start_2_cpus, tmp_path_factory):
    """The smoke pipeline (jobs/configs/pipeline_smoke.yaml) run once on a local run folder and the
    session's local Ray: (RunPaths, report, PipelineConfig). The end-to-end test checks what it learned; the multi-node
    test compares its own run on object storage with it."""
    from ray_rec.config import load_config
    from ray_rec.paths import RunPaths
    from ray_rec.pipeline.config import PipelineConfig
    from ray_rec.pipeline.run import run_pipeline

    cfg = load_config(PipelineConfig, SMOKE_PIPELINE, [f"run={tmp_path_factory.mktemp('smoke') / 'run'}"])
    report = run_pipeline(cfg)
    return RunPaths(cfg.run), report, cfg
