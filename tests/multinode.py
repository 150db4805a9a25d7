"""A real multi-node Ray cluster and an S3-compatible store on one machine, for tests.

Not a test module: tests import it as ``from multinode import LoopbackCluster, MotoServer`` (pytest's
default import mode puts ``tests/``, which has no ``__init__.py``, on ``sys.path``).

- :class:`MotoServer` runs ``python -m moto.server`` on 127.0.0.1 as an S3 endpoint.
- :class:`LoopbackCluster` runs a Ray head (``ray start --head --num-cpus=0 --block``, own process session)
  and worker nodes, each a ``tests/multinode_node.py`` process in its own session and its own mount
  namespace (``unshare -m``) with a fresh tmpfs over every folder of ``private_dirs``: a file a task
  writes there on one node is invisible to the driver and to the other nodes, as on separate machines.
  Every socket binds to 127.0.0.1 (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``).
- Drivers run as subprocesses (:meth:`LoopbackCluster.run_driver` / :meth:`LoopbackCluster.start_driver`);
  the calling (pytest) process never joins the cluster, so a local Ray it already runs is untouched.
- Stopping never calls ``ray stop`` (it would kill every Ray on the machine): each node and the head
  is SIGKILLed by process session, and the tmpfs mounts vanish with their namespaces.
- Every process is started under :func:`supervise`, which SIGKILLs its whole session if the starting
  process dies without cleaning up (pytest killed hard), so no cluster outlives its test.

Needs root (``unshare -m``, ``mount``) on Linux.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NODE_SCRIPT = HERE / "multinode_node.py"
PYTHON = sys.executable
BIN = Path(PYTHON).parent

# Environment every process of the cluster (head, nodes, drivers) gets.
CLUSTER_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # every socket on 127.0.0.1; must precede `import ray`
    "RAY_AUTH_MODE": "token",  # Ray 2.60 token auth; the token file ~/.ray/auth_token is shared
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1",  # ray.train.report blocks ~2 s otherwise
}
# Head only: the GCS declares a SIGKILLed node dead after about period * threshold (default 3 s * 5).
HEAD_ENV = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "2000",
    "RAY_health_check_failure_threshold": "3",
}
# Variables of the calling process that must not leak into the cluster (they would point a node or a
# driver at another Ray, e.g. the pytest session's own local one).
_DROP_ENV = ("RAY_ADDRESS", "RAY_JOB_CONFIG_JSON_ENV_VAR", "RAY_RAYLET_PID", "RAY_NODE_ID")

# Unix socket paths are limited to 107 bytes: <root>/n1/session_<date>_<usec>_<pid>/sockets/plasma_store
# (~70 bytes below the root); a longer workdir gets a short /tmp/rmn-XXXXXXXX root instead.
_MAX_TEMP_ROOT = 32


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (racy by nature; good enough for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _base_env(extra: dict | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(CLUSTER_ENV)
    env.update({k: str(v) for k, v in (extra or {}).items()})
    return env


# ---------------------------------------------------------------------------------------------------
# process sessions


def _proc_table() -> dict[int, tuple[int, int, int, str]]:
    """pid -> (ppid, pgid, sid, state) for every live process (zombies included, state 'Z')."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry)] = (int(fields[1]), int(fields[2]), int(fields[3]), fields[0])
    return table


def session_pids(leader: int, include_zombies: bool = False) -> list[int]:
    """Processes of the session/process group led by ``leader``, plus every descendant of it."""
    table = _proc_table()
    found = {pid for pid, (_, pgid, sid, _) in table.items() if sid == leader or pgid == leader}
    if leader in table:
        found.add(leader)
    children: dict[int, list[int]] = {}
    for pid, (ppid, *_rest) in table.items():
        children.setdefault(ppid, []).append(pid)
    stack = list(found)
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    if not include_zombies:
        found = {pid for pid in found if table.get(pid, (0, 0, 0, "Z"))[3] != "Z"}
    return sorted(found)


def kill_session(leader: int, popen: subprocess.Popen | None = None, timeout: float = 15.0,
                 zombie_wait: float = 0.0) -> None:
    """SIGKILL everything in ``leader``'s session (and its descendants) until nothing is left alive.

    Killed grandchildren are re-parented to PID 1 and stay zombies until it reaps them (about 1-2 s
    here); ``zombie_wait`` waits up to that long for them to vanish from ``ps`` too (never fails on it).
    """
    deadline = time.monotonic() + timeout
    while True:
        pids = session_pids(leader)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if popen is not None:
            try:
                popen.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
        if not pids:
            end = time.monotonic() + zombie_wait
            while session_pids(leader, include_zombies=True) and time.monotonic() < end:
                time.sleep(0.1)
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes of session {leader} survived SIGKILL: {session_pids(leader)}")
        time.sleep(0.1)


def _wait_for(pred, timeout: float, what: str, interval: float = 0.1, check=None):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if check is not None:
            check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------------
# S3


class MotoServer:
    """``python -m moto.server`` on 127.0.0.1 as an S3 endpoint (context manager).

    ``.endpoint`` is ``http://127.0.0.1:PORT``; ``.env`` the variables that make boto3 and pyarrow
    (``pyarrow.fs.FileSystem.from_uri("s3://...")``) talk to it.
    """

    ACCESS_KEY = "testing"
    SECRET_KEY = "testing"
    REGION = "us-east-1"

    def __init__(self, port: int | None = None, log_path: Path | None = None, start_timeout: float = 60.0):
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.endpoint = f"http://{self.host}:{self.port}"
        self.env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY,
            "AWS_DEFAULT_REGION": self.REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        self._log_path = log_path
        self._start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> MotoServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        log = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                supervised([PYTHON, "-m", "moto.server", "-H", self.host, "-p", str(self.port)]),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()

        def up() -> bool:
            try:
                with urllib.request.urlopen(self.endpoint + "/", timeout=2) as r:
                    return r.status < 500
            except OSError:
                return False

        def alive() -> None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.proc.returncode}")

        try:
            _wait_for(up, self._start_timeout, f"moto server on {self.endpoint}", 0.2, alive)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc is not None:
            kill_session(self.proc.pid, self.proc)
            self.proc = None

    def filesystem(self, **kwargs):
        """A ``pyarrow.fs.S3FileSystem`` on this server (pickles fine into Ray tasks)."""
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(
            endpoint_override=f"{self.host}:{self.port}", scheme="http", access_key=self.ACCESS_KEY,
            secret_key=self.SECRET_KEY, region=self.REGION, **kwargs,
        )

    def create_bucket(self, name: str) -> None:
        self.filesystem(allow_bucket_creation=True).create_dir(name)

    def list(self, prefix_uri: str) -> list[str]:
        """Keys (``prefix/...``, without the bucket) of every object under ``s3://bucket/prefix``."""
        import pyarrow.fs as pafs

        path = prefix_uri.removeprefix("s3://").rstrip("/")
        bucket = path.split("/", 1)[0]
        infos = self.filesystem().get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
        return sorted(i.path[len(bucket) + 1 :] for i in infos if i.type == pafs.FileType.File)


# ---------------------------------------------------------------------------------------------------
# Ray


@dataclass
class NodeHandle:
    """A worker node of a :class:`LoopbackCluster`."""

    index: int
    node_id: str  # hex, as ray.get_runtime_context().get_node_id() reports it on that node
    pid: int  # leader of the node's session: supervisor -> unshare -> sh -> python multinode_node.py
    popen: subprocess.Popen = field(repr=False)
    log: Path
    temp_dir: Path
    min_worker_port: int
    max_worker_port: int
    resources: dict = field(default_factory=dict)
    killed: bool = False


class LoopbackCluster:
    """A head and worker nodes of a real Ray cluster on 127.0.0.1 (context manager).

    ``env`` goes to the head, every node and every driver (e.g. ``MotoServer.env``). ``private_dirs``
    are folders that each worker node sees as its own empty tmpfs (a machine's local disk); the head and
    the drivers see the real folders.
    """

    WORKER_PORT_SPAN = 100  # worker ports per node

    def __init__(
        self,
        workdir: Path,
        env: dict | None = None,
        private_dirs: list[Path] | tuple[Path, ...] = (),
        *,
        head_start_timeout: float = 120.0,
        node_start_timeout: float = 120.0,
        object_store_memory: int = 100 * 1024 * 1024,
        fast_failure_detection: bool = True,
        keep_logs: bool = True,
        fate_share: bool = True,
    ):
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            raise RuntimeError("LoopbackCluster needs root and util-linux `unshare` (mount namespaces)")
        self.workdir = Path(workdir)
        self.env = {k: str(v) for k, v in (env or {}).items()}
        self.private_dirs = [Path(d).resolve() for d in private_dirs]
        self.head_start_timeout = head_start_timeout
        self.node_start_timeout = node_start_timeout
        self.object_store_memory = object_store_memory
        self.fast_failure_detection = fast_failure_detection
        self.keep_logs = keep_logs
        self.fate_share = fate_share
        self.port = 0
        self.address = ""
        self.nodes: list[NodeHandle] = []
        self.head: subprocess.Popen | None = None
        self._head_node_id: str | None = None
        self._dead_leaders: list[int] = []
        self._temp_root: Path | None = None
        self._own_temp_root = False
        # Worker-port ranges: a random 500-port block in 20000-30000 (above the 10002-19999 a default
        # local Ray uses, below the kernel's ephemeral range 32768+); the head takes the first
        # WORKER_PORT_SPAN ports of it, node i the i-th slice after that.
        self._port_base = random.Random(os.getpid() ^ time.time_ns()).randrange(20000, 30000, 500)
        self.startup_s: float | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> LoopbackCluster:
        try:
            self.start()
        except BaseException:
            self.shutdown()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def _temp(self) -> Path:
        if self._temp_root is None:
            candidate = self.workdir / "r"
            if len(str(candidate)) <= _MAX_TEMP_ROOT:
                candidate.mkdir(parents=True, exist_ok=True)
                self._temp_root = candidate
            else:
                self._temp_root = Path(tempfile.mkdtemp(prefix="rmn-", dir="/tmp"))
                self._own_temp_root = True
                link = self.workdir / "ray_tmp"
                if not link.exists():
                    link.symlink_to(self._temp_root)
        return self._temp_root

    def start(self) -> None:
        t0 = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        for d in self.private_dirs:
            d.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        head_temp = self._temp() / "h"
        log = self.workdir / "head.log"
        cmd = [
            str(BIN / "ray"), "start", "--head", "--block",
            "--node-ip-address=127.0.0.1", f"--port={self.port}",
            "--num-cpus=0", "--num-gpus=0", f"--object-store-memory={self.object_store_memory}",
            "--include-dashboard=false", "--disable-usage-stats",
            f"--temp-dir={head_temp}",
            # Explicit free ports where `ray start` has fixed defaults (10001, 52365) that another Ray
            # on the machine may hold.
            f"--ray-client-server-port={free_port()}", f"--dashboard-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--min-worker-port={self._port_base}", f"--max-worker-port={self._port_base + self.WORKER_PORT_SPAN - 1}",
        ]
        env = _base_env({**(HEAD_ENV if self.fast_failure_detection else {}), **self.env})
        self.head = self._spawn(cmd, env, log)

        def check() -> None:
            if self.head.poll() is not None:
                raise RuntimeError(f"ray head exited with {self.head.returncode}:\n{_tail(log)}")

        # `ray start` writes <temp>/ray_current_cluster once the head's GCS and raylet are up.
        address_file = head_temp / "ray_current_cluster"
        _wait_for(lambda: address_file.exists() and _port_open(self.port), self.head_start_timeout,
                  f"the Ray head at {self.address} (log {log})", 0.2, check)
        self.startup_s = time.monotonic() - t0

    def shutdown(self) -> None:
        errors = []
        for node in self.nodes:
            if not node.killed:
                try:
                    self.kill_node(node)
                except Exception as e:  # keep going: the head must die too
                    errors.append(e)
        if self.head is not None:
            try:
                kill_session(self.head.pid, self.head)
            except Exception as e:
                errors.append(e)
            self._dead_leaders.append(self.head.pid)
            self.head = None
        # Let PID 1 reap the killed processes so `ps` shows nothing of this cluster afterwards.
        leaders = self._dead_leaders + [n.pid for n in self.nodes]
        end = time.monotonic() + 5.0
        while any(session_pids(p, include_zombies=True) for p in leaders) and time.monotonic() < end:
            time.sleep(0.1)
        self._cleanup_temp()
        if errors:
            raise errors[0]

    def _cleanup_temp(self) -> None:
        root = self._temp_root
        if root is None:
            return
        if self.keep_logs and self._own_temp_root:
            # Keep the logs beside the test's other files; the sockets and the rest go.
            for logs in root.glob("*/session_*/logs"):
                dest = self.workdir / "ray_logs" / logs.parent.parent.name
                shutil.copytree(logs, dest, dirs_exist_ok=True, ignore_dangling_symlinks=True)
        if self._own_temp_root:
            shutil.rmtree(root, ignore_errors=True)
            link = self.workdir / "ray_tmp"
            if link.is_symlink():
                link.unlink()
        self._temp_root = None

    # -- nodes -----------------------------------------------------------------------------------

    def add_node(self, num_cpus: float = 1, resources: dict | None = None, labels: dict | None = None,
                 env: dict | None = None) -> NodeHandle:
        """Start a worker node in its own session and mount namespace; return once it is ALIVE."""
        return self._await_node(self._launch_node(num_cpus, resources, labels, env))

    def add_nodes(self, count: int, num_cpus: float = 1, resources: list[dict] | dict | None = None,
                  env: dict | None = None) -> list[NodeHandle]:
        """Start ``count`` worker nodes at once (each has its own temp dir, so they start in parallel);
        return once all are ALIVE. ``resources``: one dict for all, or one per node."""
        per_node = resources if isinstance(resources, list) else [resources] * count
        launched = []
        try:
            for i in range(count):
                launched.append(self._launch_node(num_cpus, per_node[i], None, env))
            return [self._await_node(h) for h in launched]
        except BaseException:
            for h in launched:
                if not h.killed:
                    self.kill_node(h)
            raise

    def _launch_node(self, num_cpus, resources, labels, env) -> NodeHandle:
        if not self.address:
            raise RuntimeError("cluster not started")
        index = len(self.nodes) + 1
        lo = self._port_base + index * self.WORKER_PORT_SPAN
        hi = lo + self.WORKER_PORT_SPAN - 1
        id_file = self.workdir / f"node{index}.id"
        id_file.unlink(missing_ok=True)
        log = self.workdir / f"node{index}.log"
        temp_dir = self._temp() / f"n{index}"
        py = [
            PYTHON, str(NODE_SCRIPT), "--gcs-address", self.address, "--node-id-file", str(id_file),
            "--num-cpus", str(num_cpus), "--resources", json.dumps(resources or {}),
            "--labels", json.dumps(labels or {}), "--min-worker-port", str(lo), "--max-worker-port", str(hi),
            "--object-store-memory", str(self.object_store_memory), "--temp-dir", str(temp_dir),
            "--node-name", f"node{index}", "--wait-timeout", str(self.node_start_timeout),
        ]
        # A fresh tmpfs over each private dir, visible only inside this node's mount namespace.
        mounts = [f"mount -t tmpfs -o mode=0755 tmpfs-node{index} {shlex.quote(str(d))}" for d in self.private_dirs]
        script = " && ".join([*mounts, "exec " + shlex.join(py)])
        cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", script]
        popen = self._spawn(cmd, _base_env({**self.env, **(env or {})}), log)
        handle = NodeHandle(index=index, node_id="", pid=popen.pid, popen=popen, log=log, temp_dir=temp_dir,
                            min_worker_port=lo, max_worker_port=hi, resources=dict(resources or {}))
        self.nodes.append(handle)
        return handle

    def _await_node(self, handle: NodeHandle) -> NodeHandle:
        id_file = self.workdir / f"node{handle.index}.id"

        def check() -> None:
            if handle.popen.poll() is not None:
                raise RuntimeError(f"node {handle.index} exited with {handle.popen.returncode}:\n{_tail(handle.log)}")

        try:
            _wait_for(id_file.exists, self.node_start_timeout + 10,
                      f"node {handle.index} to be ALIVE (log {handle.log})", 0.2, check)
        except BaseException:
            self.kill_node(handle)
            raise
        handle.node_id = id_file.read_text().strip()
        return handle

    def _spawn(self, cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
        """Start ``cmd`` in a new session (so it can be killed as one), output to ``log``. With
        ``fate_share`` a supervisor leads the session and SIGKILLs all of it if this process dies
        (pytest killed hard) or ``cmd`` exits."""
        with open(log, "ab") as out:
            return subprocess.Popen(
                supervised(cmd) if self.fate_share else cmd, env=env, cwd=self.workdir, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )

    def kill_node(self, handle: NodeHandle, zombie_wait: float = 0.0) -> None:
        """SIGKILL the node's whole session (raylet, agents, workers): a machine dying. Its tmpfs
        mounts go with its mount namespace."""
        kill_session(handle.pid, handle.popen, zombie_wait=zombie_wait)
        handle.killed = True

    def node_pids(self, handle: NodeHandle) -> list[int]:
        """Live processes of a node (empty once it is killed)."""
        return session_pids(handle.pid)

    @property
    def temp_root(self) -> Path:
        """Root of the Ray temp dirs (``h`` for the head, ``nI`` for node I); removed at shutdown
        (the logs are copied to ``workdir/ray_logs`` first) when it is a /tmp/rmn-* folder."""
        return self._temp()

    def head_pids(self) -> list[int]:
        return session_pids(self.head.pid) if self.head is not None else []

    def leftover_pids(self, include_zombies: bool = False) -> list[int]:
        """Processes still running from the head's or any node's session (empty after shutdown)."""
        leaders = self._dead_leaders + ([self.head.pid] if self.head is not None else []) + [n.pid for n in self.nodes]
        return sorted({p for leader in leaders for p in session_pids(leader, include_zombies)})

    # -- cluster state (from a short subprocess: this process never joins the cluster) ---------

    def node_table(self, timeout: float = 60.0) -> list[dict[str, Any]]:
        """The GCS node table, dead nodes included: [{"NodeID", "Alive", "IsHead", "NodeName", "Resources"}]."""
        code = (
            "import json, ray._private.state as s\n"
            "from ray._raylet import GcsClientOptions\n"
            "g = s.GlobalState()\n"
            f"g._initialize_global_state(GcsClientOptions.create({self.address!r}, None, "
            "allow_cluster_id_nil=True, fetch_cluster_id_if_nil=False))\n"
            "rows = [{'NodeID': n['NodeID'], 'Alive': n['Alive'], 'NodeName': n.get('NodeName'),\n"
            "         'IsHead': 'node:__internal_head__' in n.get('Resources', {}),\n"
            "         'Resources': n.get('Resources', {})} for n in g.node_table()]\n"
            "print('NODE_TABLE=' + json.dumps(rows))\n"
        )
        r = subprocess.run([PYTHON, "-c", code], env=_base_env(self.env), capture_output=True, text=True,
                           timeout=timeout)
        for line in r.stdout.splitlines():
            if line.startswith("NODE_TABLE="):
                return json.loads(line[len("NODE_TABLE="):])
        raise RuntimeError(f"could not read the node table (rc {r.returncode}):\n{r.stderr[-3000:]}")

    def alive_node_ids(self) -> set[str]:
        return {n["NodeID"] for n in self.node_table() if n["Alive"]}

    def wait_node_dead(self, handle: NodeHandle | str, timeout: float = 30.0) -> float:
        """Poll until the GCS marks the node dead; return the seconds it took."""
        node_id = handle if isinstance(handle, str) else handle.node_id
        t0 = time.monotonic()

        def dead() -> bool:
            rows = {n["NodeID"]: n for n in self.node_table()}
            return node_id in rows and not rows[node_id]["Alive"]

        _wait_for(dead, timeout, f"node {node_id} to be marked dead", 0.5)
        return time.monotonic() - t0

    @property
    def head_node_id(self) -> str | None:
        if self._head_node_id is None and self.address:
            heads = [n["NodeID"] for n in self.node_table() if n["IsHead"]]
            self._head_node_id = heads[0] if len(heads) == 1 else None
        return self._head_node_id

    # -- drivers ---------------------------------------------------------------------------------

    def driver_env(self, env: dict | None = None) -> dict[str, str]:
        return _base_env({**self.env, "RAY_ADDRESS": self.address, **(env or {})})

    def start_driver(self, args: list[str], env: dict | None = None, cwd: Path | str | None = None,
                     **popen_kwargs) -> subprocess.Popen:
        """Start ``args`` (e.g. ``[sys.executable, "-c", code]`` or the ``ray-rec`` CLI) as a driver of
        this cluster (``RAY_ADDRESS`` set); in its own session so :func:`kill_session` can stop it."""
        popen_kwargs.setdefault("start_new_session", True)
        return subprocess.Popen(args, env=self.driver_env(env), cwd=cwd or self.workdir, **popen_kwargs)

    def run_driver(self, args: list[str], env: dict | None = None, cwd: Path | str | None = None,
                   timeout: float = 300.0) -> subprocess.CompletedProcess:
        """Run a driver to completion, capturing its output (text). Killed with its session on timeout."""
        p = self.start_driver(args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_session(p.pid, p)
            out, err = p.communicate()
            raise subprocess.TimeoutExpired(args, timeout, output=out, stderr=err) from None
        finally:
            if p.poll() is None:
                kill_session(p.pid, p)
        return subprocess.CompletedProcess(args, p.returncode, out, err)


def supervised(cmd: list[str]) -> list[str]:
    """``cmd`` wrapped in :func:`supervise` (run it as the leader of a new session)."""
    return [PYTHON, str(Path(__file__).resolve()), "supervise", "--", *cmd]


def supervise(cmd: list[str], poll: float = 0.2) -> int:
    """Run ``cmd`` as a child; when the process that started us dies (re-parenting) or ``cmd`` exits,
    SIGKILL every process of our session (Ray's own fate sharing does not cover every process of a
    node built with ``Node(..., shutdown_at_exit=False)``, and `ray start` re-groups its children)."""
    parent = os.getppid()
    child = subprocess.Popen(cmd)
    rc = 0
    while True:
        if os.getppid() != parent:
            rc = 137
            break
        code = child.poll()
        if code is not None:
            rc = code
            break
        time.sleep(poll)
    me = os.getpid()
    for _ in range(50):
        others = [p for p in session_pids(os.getsid(0)) if p != me]
        if not others:
            break
        for p in others:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            child.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            pass
    return rc


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "supervise" and sys.argv[2] == "--":
        sys.exit(supervise(sys.argv[3:]))
    sys.exit(f"usage: {sys.argv[0]} supervise -- CMD [ARGS...]")
