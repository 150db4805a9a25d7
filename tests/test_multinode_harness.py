"""The loopback multi-node harness (tests/multinode.py) really is a multi-node cluster: a head with no
CPUs plus two 1-CPU worker nodes, each with a private disk over the same folders, an S3 store (moto),
Ray Train placing one worker per node and checkpointing to the bucket, and a killed node seen dead."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest
from multinode import LoopbackCluster, MotoServer

pytestmark = [pytest.mark.slow, pytest.mark.ray]

DRIVER = r"""
import json, os, sys, time
T0 = time.monotonic()
import pyarrow.fs as pafs
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

cfg = json.loads(sys.argv[1])
ray.init(logging_level="WARNING", log_to_driver=False)  # RAY_ADDRESS points at the loopback cluster
cache = cfg["cache"]
t_init = time.monotonic() - T0

@ray.remote(num_cpus=1)
def touch(tag):
    with open(os.path.join(cache, tag + ".txt"), "w") as f:
        f.write(tag)
    return ray.get_runtime_context().get_node_id(), sorted(os.listdir(cache))

refs = [touch.options(scheduling_strategy=NodeAffinitySchedulingStrategy(nid, soft=False)).remote(nid[:8])
        for nid in cfg["nodes"]]
tasks = [list(r) for r in ray.get(refs)]
driver_view = sorted(os.listdir(cache))
t_tasks = time.monotonic() - T0

from ray.train import Checkpoint, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

def loop(config):
    import tempfile
    import torch, torch.distributed as dist
    import ray, ray.train
    node = ray.get_runtime_context().get_node_id()
    nodes = [None] * dist.get_world_size()
    dist.all_gather_object(nodes, node)  # gloo across the two nodes
    with tempfile.TemporaryDirectory() as d:
        ckpt = None
        if ray.train.get_context().get_world_rank() == 0:
            torch.save({"w": torch.zeros(2)}, os.path.join(d, "model.pt"))
            ckpt = Checkpoint.from_directory(d)
        ray.train.report({"nodes": nodes}, checkpoint=ckpt)

fs = pafs.S3FileSystem(endpoint_override=cfg["s3_host"], scheme="http", access_key="testing",
                       secret_key="testing", region="us-east-1")
trainer = TorchTrainer(
    loop,
    scaling_config=ScalingConfig(num_workers=2, use_gpu=False, resources_per_worker={"CPU": 1}),
    run_config=RunConfig(name=cfg["name"], storage_path=cfg["storage"], storage_filesystem=fs),
)
result = trainer.fit()
t_train = time.monotonic() - T0
print("RESULT=" + json.dumps({
    "tasks": tasks, "driver_view": driver_view, "train_nodes": result.metrics["nodes"],
    "checkpoint": result.checkpoint.path, "checkpoint_fs": result.checkpoint.filesystem.type_name,
    "t": {"init": round(t_init, 1), "tasks": round(t_tasks, 1), "train": round(t_train, 1)},
}), flush=True)
"""


def test_loopback_cluster_private_disks_train_on_s3_and_node_death(tmp_path):
    t0 = time.monotonic()
    run_dir, cache_dir = tmp_path / "run", tmp_path / "cache"  # a local run folder, a node cache
    with MotoServer(log_path=tmp_path / "moto.log") as s3:
        s3.create_bucket("bucket")
        moto_s = time.monotonic() - t0
        with LoopbackCluster(tmp_path / "cluster", s3.env, [run_dir, cache_dir]) as cluster:
            t_nodes = time.monotonic()
            n1, n2 = cluster.add_nodes(2, num_cpus=1)
            nodes_s = time.monotonic() - t_nodes
            startup = time.monotonic() - t0
            head = cluster.head_node_id
            assert head and len({head, n1.node_id, n2.node_id}) == 3
            rows = {n["NodeID"]: n for n in cluster.node_table()}
            assert {k for k, n in rows.items() if n["Alive"]} == {head, n1.node_id, n2.node_id}
            assert rows[head]["Resources"].get("CPU", 0) == 0
            assert rows[n1.node_id]["Resources"]["CPU"] == rows[n2.node_id]["Resources"]["CPU"] == 1
            (cache_dir / "host-only.txt").write_text("x")  # the head's disk: invisible on the nodes
            temp_root = str(cluster.temp_root)

            name = f"mn-{uuid.uuid4().hex[:8]}"
            cfg = {"cache": str(cache_dir), "nodes": [n1.node_id, n2.node_id], "name": name,
                   "storage": "bucket/prefix", "s3_host": s3.endpoint.removeprefix("http://")}
            t_driver = time.monotonic()
            r = cluster.run_driver([sys.executable, "-c", DRIVER, json.dumps(cfg)], timeout=240)
            driver_s = time.monotonic() - t_driver
            assert r.returncode == 0, r.stderr[-6000:]
            out = json.loads(next(line for line in r.stdout.splitlines() if line.startswith("RESULT="))[7:])

            # (a) each node wrote into its own private tmpfs; the driver (host) saw neither file
            assert out["tasks"] == [[n1.node_id, [n1.node_id[:8] + ".txt"]],
                                    [n2.node_id, [n2.node_id[:8] + ".txt"]]]
            assert out["driver_view"] == ["host-only.txt"]
            assert sorted(p.name for p in cache_dir.iterdir()) == ["host-only.txt"]
            # (b) one Train worker per worker node, none on the head; checkpoint in the bucket
            assert sorted(out["train_nodes"]) == sorted([n1.node_id, n2.node_id])
            assert out["checkpoint_fs"] == "s3" and out["checkpoint"].startswith(f"bucket/prefix/{name}/")
            keys = s3.list(f"s3://bucket/prefix/{name}")
            assert any(k.startswith(f"prefix/{name}/checkpoint_") and k.endswith("/model.pt") for k in keys), keys

            # a machine dies: its whole process session goes, the GCS marks it dead
            t_kill = time.monotonic()
            cluster.kill_node(n1)
            assert cluster.node_pids(n1) == []
            dead_after = cluster.wait_node_dead(n1, timeout=30)
            assert cluster.alive_node_ids() == {head, n2.node_id}
            kill_s = time.monotonic() - t_kill
        # nothing of the cluster survives: no processes of its sessions, no Ray process on its temp dir
        assert cluster.leftover_pids() == []
        ps = subprocess.run(["ps", "-eo", "stat=,args="], capture_output=True, text=True).stdout
        assert not [ln for ln in ps.splitlines() if temp_root in ln and not ln.startswith("Z")]
        assert not any(str(cache_dir) in ln for ln in open("/proc/self/mountinfo"))
    total = time.monotonic() - t0
    print(f"\nmultinode timings: moto {moto_s:.1f} s, head {cluster.startup_s:.1f} s, 2 nodes {nodes_s:.1f} s, "
          f"moto+head+2 nodes {startup:.1f} s, "
          f"driver (tasks+train) {driver_s:.1f} s {out['t']}, node death seen after {dead_after:.1f} s "
          f"(kill+checks {kill_s:.1f} s), whole test {total:.1f} s")
