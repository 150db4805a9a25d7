"""One worker node of a loopback Ray cluster (run by ``tests/multinode.py``; not a test module).

``ray start --address=...`` refuses to start a worker node while ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
(which keeps every Ray socket on 127.0.0.1), so the node is built here the way
``ray.cluster_utils.Cluster.add_node`` does: a ``ray._private.node.Node(RayParams(...), head=False)``.
Once the node is registered ALIVE in the GCS its hex id is written (atomically) to ``--node-id-file``,
then the process sleeps until it is killed. The harness SIGKILLs its whole session to stop it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

# Must be in the environment before `ray` is imported: it binds every socket to 127.0.0.1.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--gcs-address", required=True)
    p.add_argument("--node-id-file", required=True)
    p.add_argument("--num-cpus", type=float, default=1)
    p.add_argument("--resources", default="{}", help="JSON dict of custom resources")
    p.add_argument("--labels", default="{}", help="JSON dict of node labels")
    p.add_argument("--min-worker-port", type=int, required=True)
    p.add_argument("--max-worker-port", type=int, required=True)
    p.add_argument("--object-store-memory", type=int, default=100 * 1024 * 1024)
    p.add_argument("--temp-dir", default=None)
    p.add_argument("--node-name", default=None)
    p.add_argument("--wait-timeout", type=float, default=120.0)
    args = p.parse_args(argv)

    from ray._private.node import Node
    from ray._private.parameter import RayParams

    num_cpus = args.num_cpus
    params = RayParams(
        gcs_address=args.gcs_address,
        node_ip_address="127.0.0.1",
        node_name=args.node_name,
        num_cpus=int(num_cpus) if float(num_cpus).is_integer() else num_cpus,
        num_gpus=0,
        resources=json.loads(args.resources),
        labels=json.loads(args.labels),
        object_store_memory=args.object_store_memory,
        min_worker_port=args.min_worker_port,
        max_worker_port=args.max_worker_port,
        include_dashboard=False,
        # One log monitor per physical machine in a real cluster; here each node streams its own
        # workers' logs to the driver like a separate machine would, so keep it (as `ray start` does).
        include_log_monitor=True,
        node_manager_port=0,
        temp_dir=args.temp_dir,
    )
    # As cluster_utils: pick a random agent port so nodes do not fight over the default 52365.
    params.dashboard_agent_listen_port = None
    node = Node(params, head=False, shutdown_at_exit=False, spawn_reaper=False)
    node_id = node.node_id
    _wait_alive(args.gcs_address, node_id, args.wait_timeout)

    tmp = args.node_id_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(node_id)
    os.replace(tmp, args.node_id_file)
    print(f"node {node_id} alive (pid {os.getpid()}, session {node.get_session_dir_path()})", flush=True)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


def _wait_alive(gcs_address: str, node_id: str, timeout: float) -> None:
    """Poll the GCS node table until ``node_id`` is registered ALIVE (what cluster_utils waits for)."""
    import ray._private.state
    from ray._raylet import GcsClientOptions

    state = ray._private.state.GlobalState()
    state._initialize_global_state(
        GcsClientOptions.create(gcs_address, None, allow_cluster_id_nil=True, fetch_cluster_id_if_nil=False)
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(n["NodeID"] == node_id and n["Alive"] for n in state.node_table()):
            return
        time.sleep(0.1)
    raise TimeoutError(f"node {node_id} not ALIVE in the GCS at {gcs_address} after {timeout} s")


if __name__ == "__main__":
    sys.exit(main())
