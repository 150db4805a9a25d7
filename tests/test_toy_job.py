"""``ray job submit`` of a short toy run to a local ``ray start --head`` on 127.0.0.1.

The head runs in its own process group and is torn down by signalling that group only: ``ray stop``
would stop every Ray on the machine, including the test session's own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from ray_rec.runtime import setup_env

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_env() -> dict[str, str]:
    env = {**os.environ, **setup_env()}
    env.pop("RAY_ADDRESS", None)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # job entrypoints find this venv's ray-rec
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"  # SIGTERM tears the head down at once
    return env


@pytest.fixture
def local_head():
    """A ``ray start --head --block`` cluster on 127.0.0.1 with 2 CPUs -> its dashboard URL."""
    temp = tempfile.mkdtemp(prefix="rr", dir="/tmp")  # short: Ray's unix socket paths are length-limited
    dash = free_port()
    cmd = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
           f"--port={free_port()}", f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1",
           "--include-dashboard=true", f"--ray-client-server-port={free_port()}",
           f"--dashboard-agent-listen-port={free_port()}", "--num-cpus=2", f"--temp-dir={temp}"]
    log = open(Path(temp) / "head.log", "w")
    head = subprocess.Popen(cmd, env=cluster_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/version", timeout=2)
                break
            except urllib.error.HTTPError:  # any HTTP answer (401: token auth is on) means it is up
                break
            except OSError:
                if head.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"ray start --head did not come up: {(Path(temp) / 'head.log').read_text()}") from None
                time.sleep(1)
        yield url
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # only the processes this test started
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        log.close()


def test_ray_job_submit_short_toy_run(local_head, tmp_path):
    env = cluster_env()
    env["RAY_ADDRESS"] = local_head
    env["RAY_AUTH_MODE"] = "token"  # Ray 2.60 enables token auth; the submitter must say so (docs/running.md)
    run_dir, name = tmp_path / "run", f"job-{uuid.uuid4().hex[:8]}"
    # The recipe itself: ray job submit --working-dir . --runtime-env jobs/runtime_env.yaml -- ray-rec toy train
    cmd = [str(ROOT / "jobs" / "toy_train.sh"), "--config", "jobs/configs/toy_smoke.yaml",
           "--run", str(run_dir), "--name", name, "--epochs", "2", "--workers", "2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    logs = proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert "succeeded" in logs
    assert "[toy] epoch 2/2" in logs and "hr@10" in logs and "most popular (test)" in logs
    assert (run_dir / "toy" / "train" / name / "metrics.json").is_file()
