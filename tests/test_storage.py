"""The run folder as a URI (ray_rec.storage): resolution, refusal of unusable storage, the workspace
that mirrors a remote run (pull inputs and records, push stage folders with the record last), and the
node cache workers read models from. Runs against an S3 server (moto) on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from ray_rec import stages
from ray_rec.cli import main
from ray_rec.config import load_config
from ray_rec.data.config import DataConfig
from ray_rec.errors import InputError
from ray_rec.nodecache import Ref, localize, marker_exists, write_marker
from ray_rec.paths import RunPaths
from ray_rec.storage import JOB_ENV, STORAGE_ENV, resolve_run, storage_of

DATA_SMOKE = "jobs/configs/data_smoke.yaml"


def stored(uri: str) -> dict[str, int]:
    """Relative key -> size of every object under ``uri``."""
    fs, base = pafs.FileSystem.from_uri(uri)
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return {i.path[len(base) + 1:]: i.size for i in infos if i.type == pafs.FileType.File}


def test_resolve_run(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    monkeypatch.delenv(JOB_ENV, raising=False)
    assert resolve_run("s3://bucket/runs/x/") == "s3://bucket/runs/x"
    assert resolve_run("file:///data/runs/x") == "/data/runs/x"
    assert resolve_run("runs/x") == str(tmp_path / "runs" / "x")
    monkeypatch.setenv(STORAGE_ENV, "s3://bucket/ray_rec")
    assert resolve_run("runs/x") == "s3://bucket/ray_rec/runs/x"
    assert resolve_run("/abs/x") == "/abs/x"  # an absolute path is never moved
    monkeypatch.setenv(STORAGE_ENV, "/efs/ray_rec")
    assert resolve_run("runs/x") == "/efs/ray_rec/runs/x"
    monkeypatch.setenv(STORAGE_ENV, "relative/root")
    with pytest.raises(InputError, match=f"{STORAGE_ENV}='relative/root' must be an absolute path"):
        resolve_run("runs/x")
    # under `ray job submit` (Ray sets JOB_ENV in the entrypoint) a relative run folder would be lost
    monkeypatch.delenv(STORAGE_ENV)
    monkeypatch.setenv(JOB_ENV, "{}")
    with pytest.raises(InputError, match="'runs/x' is relative, and under `ray job submit`"):
        resolve_run("runs/x")
    assert resolve_run("s3://bucket/x") == "s3://bucket/x"


def test_bad_storage_is_refused_in_one_line_before_anything_is_written(s3_run, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    cases = {"sss://bucket/run": "storage scheme 'sss' is not known",
             "s3://no-such-bucket/run": "bucket 'no-such-bucket' does not exist"}
    for run, message in cases.items():
        assert main(["data", "prepare", "--config", str(Path(__file__).parents[1] / DATA_SMOKE), "--run", run]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and run in err and message in err, err
    assert stored(f"s3://{s3_run.bucket}") == {}
    assert list(tmp_path.iterdir()) == []  # no local run folder, not even an empty workspace


def test_read_only_run_folder_is_refused(tmp_path):
    """A read-only mount (a private tmpfs mounted ro in a mount namespace; root ignores file modes)."""
    if not shutil.which("unshare") or os.geteuid() != 0:
        pytest.fail("this test needs root and unshare (both present on this project's machines and CI)")
    mount = tmp_path / "ro"
    mount.mkdir()
    cli = Path(sys.executable).parent / "ray-rec"
    script = (f"mount -t tmpfs -o ro none {mount} && "
              f"exec {cli} data prepare --config {DATA_SMOKE} --run {mount}/run")
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                          cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and f"run folder {mount}/run" in err[0] and "not writable" in err[0], proc.stderr


def test_stage_on_s3_publishes_its_record_last_and_reruns_from_the_bucket_alone(s3_run, monkeypatch, tmp_path,
                                                                                capsys):
    monkeypatch.chdir(tmp_path)
    config = str(Path(__file__).parents[1] / DATA_SMOKE)
    assert main(["data", "prepare", "--config", config, "--run", s3_run.uri]) == 0
    keys = stored(s3_run.uri)
    for name in ("items.parquet", "interactions.parquet", "samples_train.parquet", "manifest.json", "stage.json"):
        assert f"data/{name}" in keys, keys
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # nothing under any local run folder
    paths = RunPaths(s3_run.uri)
    assert paths.root.is_relative_to(s3_run.cache) and paths.uri == s3_run.uri

    shutil.rmtree(s3_run.cache)  # the workspace is a cache: the bucket alone says the stage is done
    capsys.readouterr()
    assert main(["data", "prepare", "--config", config, "--run", s3_run.uri]) == 0
    assert f"data: {s3_run.uri}/data is up to date" in capsys.readouterr().out
    assert pq.read_metadata(paths.items).num_rows == 200  # pulled back with the record

    # a stage that starts over deletes its stored record first: the old files no longer count as done
    cfg = load_config(DataConfig, config, [f"run={s3_run.uri}"])
    stages.begin("data", cfg)
    assert "data/stage.json" not in stored(s3_run.uri) and "data/items.parquet" in stored(s3_run.uri)
    assert not stages.up_to_date("data", cfg)


def test_fetch_follows_the_stored_record(s3_run, monkeypatch, tmp_path):
    """A driver's workspace copy is replaced when another driver republished the stage, and kept otherwise."""
    config = str(Path(__file__).parents[1] / DATA_SMOKE)
    assert main(["data", "prepare", "--config", config, "--run", s3_run.uri]) == 0
    paths = RunPaths(s3_run.uri)
    first = paths.items.stat().st_mtime_ns
    assert stages.fetch(s3_run.uri, paths.items) == paths.items and paths.items.stat().st_mtime_ns == first

    other = tmp_path / "other-cache"  # a second machine: its own workspace
    monkeypatch.setenv("RAY_REC_CACHE", str(other))
    assert main(["data", "prepare", "--config", config, "--run", s3_run.uri, "--set", "synthetic.n_items=150",
                 "--set", "split=ratio"]) == 0
    monkeypatch.setenv("RAY_REC_CACHE", str(s3_run.cache))
    stages.fetch(s3_run.uri, paths.items)
    assert pq.read_metadata(paths.items).num_rows == 150
    record = json.loads((paths.data_dir / "stage.json").read_text())
    assert record["config"]["synthetic"]["n_items"] == 150


def test_localize_copies_once_per_node_keyed_by_content(s3_run):
    store = storage_of(s3_run.uri)
    folder = store.local / "model"
    folder.mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"v1")
    store.push(folder)
    ref = store.ref(folder, key="content-1")
    assert isinstance(ref, Ref) and ref.uri == f"{s3_run.uri}/model"
    local = localize(ref)
    assert (local / "weights.bin").read_bytes() == b"v1" and local.is_relative_to(s3_run.cache / "objects")
    store.delete(folder)  # gone from storage: the node's copy is still used for the same content
    assert localize(ref) == local and (local / "weights.bin").read_bytes() == b"v1"
    with pytest.raises(InputError, match=f"{s3_run.uri}/model does not exist in storage"):
        localize(Ref(ref.uri, "content-2"))  # other content is fetched anew
    assert localize(str(folder)) == folder  # a local path is used where it is
    assert store.ref(Path("/elsewhere/model"), "k") == "/elsewhere/model"


def test_markers_on_storage(s3_run, tmp_path):
    uri = f"{s3_run.uri}/sft/x/crash_marker"
    assert not marker_exists(uri)
    write_marker(uri, "worker 1 exited\n")
    assert marker_exists(uri) and stored(s3_run.uri) == {"sft/x/crash_marker": len("worker 1 exited\n")}
    local = tmp_path / "m" / "crash_marker"
    write_marker(str(local), "x")
    assert marker_exists(str(local))


def test_storage_that_refuses_these_credentials_is_refused_in_one_line(tmp_path, monkeypatch):
    """An S3 server that checks credentials (moto with authentication on from the first request): wrong
    keys, and no keys at all, each stop the command before anything is written."""
    from multinode import free_port, kill_session

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import socket
        import time

        deadline = time.monotonic() + 60
        def listening() -> bool:
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0

        while not listening():
            assert time.monotonic() < deadline and server.poll() is None, "moto did not start"
            time.sleep(0.2)
        base = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true", "RAY_REC_CACHE": str(tmp_path / "cache")}
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        for keys in ({"AWS_ACCESS_KEY_ID": "nobody", "AWS_SECRET_ACCESS_KEY": "wrong"}, {}):
            proc = subprocess.run([str(Path(sys.executable).parent / "ray-rec"), "data", "prepare", "--config",
                                   DATA_SMOKE, "--run", "s3://somebucket/run"], env={**env, **base, **keys},
                                  cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=120)
            err = proc.stderr.strip().splitlines()
            assert proc.returncode == 2 and len(err) == 1, proc.stderr
            assert "run folder s3://somebucket/run: cannot reach the storage" in err[0] and "credentials" in err[0]
        assert not (tmp_path / "cache").exists()
    finally:
        kill_session(server.pid, server)
