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
