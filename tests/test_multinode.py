"""The smoke pipeline on a real multi-node Ray cluster with its run folder in object storage.

Three nodes on this machine (tests/multinode.py): a head with no CPUs (no work runs on it) and two
worker nodes, each its own process group in its own mount namespace, with a private tmpfs over the
node cache and over the folder a relative run folder would land in, so a file one node writes there
is invisible to the others and to the driver, as on separate machines. The run folder is a bucket on
an S3 server on 127.0.0.1. During SFT one worker node is killed (SIGKILL of its whole process group)
and a fresh one joins, as an autoscaler would bring; training goes on from the last checkpoint in
the bucket (FailureConfig).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from multinode import LoopbackCluster

pytestmark = [pytest.mark.slow, pytest.mark.ray]

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "jobs" / "configs" / "pipeline_smoke.yaml"
CLI = Path(sys.executable).parent / "ray-rec"
# every stage's record (published last), and the report
PUBLISHED = ["data/stage.json", "embeddings/stage.json", "sid/rqkmeans_constrained/stage.json",
             "sft/sft-smoke/stage.json", "sft/sft-smoke/model/model.safetensors", "eval/sft-smoke/test/stage.json",
             "rl/grpo-smoke/stage.json", "rl/grpo-smoke/model/model.safetensors",
             "eval/sft-smoke-rl/test/stage.json", "baseline/sasrec/stage.json", "baseline/sasrec/model/model.pt",
             "report/metrics.json"]


def node_files(cluster: LoopbackCluster, node, folder: Path) -> list[str]:
    """Files under ``folder`` as ``node`` sees it: from inside the mount namespace of its processes."""
    own = os.readlink("/proc/self/ns/mnt")
    inside = [pid for pid in cluster.node_pids(node) if os.readlink(f"/proc/{pid}/ns/mnt") != own]
    assert inside, "the node runs no process in a mount namespace of its own"
    out = subprocess.run(["nsenter", "-t", str(inside[0]), "-m", "find", str(folder), "-type", "f"],
                         capture_output=True, text=True, check=True).stdout
    return [line[len(str(folder)) + 1:] for line in out.splitlines()]


# The project's variables (runtime.setup_env): the nodes start without them, as raylets started by hand
# would; every worker sets them up itself.
PROJECT_ENV = ("DS_ACCELERATOR", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE",
               "TORCH_EXTENSIONS_DIR", "TOKENIZERS_PARALLELISM", "TRANSFORMERS_NO_ADVISORY_WARNINGS")


def test_smoke_pipeline_on_three_nodes_with_s3_survives_a_lost_node(tmp_path, s3_server, smoke_pipeline,
                                                                    monkeypatch):
    local_paths, local_report, _ = smoke_pipeline
    for key in PROJECT_ENV:
        monkeypatch.delenv(key, raising=False)
    s3_server.create_bucket("multinode")
    run = "s3://multinode/smoke"
    cache, cwd = tmp_path / "cache", tmp_path / "driver"  # node caches; where a relative run folder would go
    cache.mkdir()
    cwd.mkdir()
    (cache / "driver-machine.txt").write_text("only the driver's machine has this file\n")
    env = {**s3_server.env, "RAY_REC_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    log = tmp_path / "driver.log"
    with LoopbackCluster(tmp_path / "cluster", env, private_dirs=[cache, cwd]) as cluster:
        first, second = cluster.add_nodes(2, num_cpus=1)  # one CPU each: the two Train workers go one per node
        with open(log, "w") as out:
            driver = cluster.start_driver([str(CLI), "pipeline", "run", "--config", str(SMOKE), "--run", run,
                                           "--set", "sft.train.max_failures=2"], cwd=cwd, stdout=out,
                                          stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 420
            while not any(k.startswith("smoke/sft/sft-smoke/checkpoint_") and k.endswith("trainer_state.json")
                          for k in s3_server.list(f"{run}/sft")):
                assert driver.poll() is None, f"the driver ended before SFT checkpointed:\n{log.read_text()[-4000:]}"
                assert time.monotonic() < deadline, f"no SFT checkpoint in the bucket:\n{log.read_text()[-4000:]}"
                time.sleep(1.0)
            time.sleep(8.0)  # let Ray Train's controller register that checkpoint (it polls the workers)
            cluster.kill_node(second)  # a machine lost mid-training
            spare = cluster.add_node(num_cpus=1)
            assert driver.wait(timeout=540) == 0, log.read_text()[-6000:]
        survivors = {first.node_id, spare.node_id}
        # workers keep only the node cache: copies of models and samples, never a run workspace
        for node in (first, spare):
            files = node_files(cluster, node, cache)
            assert any(f.startswith("objects/") for f in files), files
            assert all(f.startswith("objects/") for f in files), files  # no driver file, no workspace
        head = cluster.head_node_id
    # ... and the driver's machine never saw what the workers copied: the disks really were private
    assert not (cache / "objects").exists() and (cache / "runs").is_dir()

    keys = set(s3_server.list(run))
    missing = [k for k in PUBLISHED if f"smoke/{k}" not in keys]
    assert not missing, f"not in the bucket: {missing}"
    assert list(cwd.iterdir()) == []  # nothing under a local run folder on the driver's machine either
    fs = s3_server.filesystem()

    def stored_json(key: str) -> dict:
        with fs.open_input_stream(f"multinode/smoke/{key}") as f:
            return json.loads(f.read())

    sft, rl = stored_json("sft/sft-smoke/stage.json"), stored_json("rl/grpo-smoke/stage.json")
    # the Train workers ran on worker nodes, one each (never the head), the last group on the survivors
    assert set(sft["worker_nodes"]) == survivors and head not in sft["worker_nodes"], (sft["worker_nodes"], head)
    assert set(rl["worker_nodes"]) == survivors, rl["worker_nodes"]
    # SFT went on from a checkpoint in the bucket rather than from scratch
    assert sft["resumed_at"] and min(sft["resumed_at"]) > 0 and sft["checkpoint"].startswith("s3://"), sft
    assert sft["steps"] == json.loads(
        (local_paths.sft_dir("sft-smoke") / "stage.json").read_text())["steps"]
    # the same numbers as the local-folder run of the same config and seeds
    remote_rows, local_rows = stored_json("report/metrics.json")["test"], local_report["test"]
    assert remote_rows.keys() == local_rows.keys()
    for model, row in local_rows.items():
        assert remote_rows[model] == pytest.approx(row, abs=1e-6), model
