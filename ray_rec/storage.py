"""Where a run folder lives: a local path, a shared mount, or an object-store URI.

A run folder (``--run``) may be

* a local or shared-mount path (``runs/demo``, ``/efs/runs/demo``): stages read and write it directly,
  as they always did; on a multi-node cluster it must be a mount every node sees;
* a URI that ``pyarrow.fs.FileSystem.from_uri`` accepts (``s3://bucket/runs/demo``, ``gs://...``,
  ``abfs://...``, ``hdfs://...``). Credentials and endpoints come from each cloud's own environment
  (for S3: ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, an instance profile, ...), never from a config.

For a URI, the driver keeps a **workspace**: a node-local mirror of the run under the cache folder
(``RAY_REC_CACHE``, default ``~/.cache/ray_rec``). Before a stage decides whether to run, it pulls its
inputs and its own record from storage into the workspace (:func:`ray_rec.stages.up_to_date`); the
stage computes on the driver with plain local files; at the end it pushes its folder back
(:func:`ray_rec.stages.finish`), its ``stage.json`` last. The workspace is a cache: deleting it loses
nothing, and a second driver on another machine sees the same run.

What runs on other nodes never reads a driver path:

* Ray Train and Tune write checkpoints straight to storage (:meth:`RunStorage.train_storage` gives
  ``storage_path`` and ``storage_filesystem``);
* workers that read a model or a Parquet file (evaluation actors, GRPO and SASRec workers) get a
  :class:`ray_rec.nodecache.Ref` from :meth:`RunStorage.ref` and call :func:`ray_rec.nodecache.localize`, which copies it into a node-local
  cache once per node, keyed by the content of the stage record that vouches for it.

Publishing: a stage's files are uploaded first and its ``stage.json`` last, and a stage that starts
deletes its old record first (:func:`ray_rec.stages.begin`). A reader trusts only a folder whose record
exists, so a driver that dies half-way through an upload leaves nothing a later stage would use. Each
object upload is atomic on object stores; local files are renamed into place (:mod:`ray_rec.io`).

A relative run folder resolves against ``RAY_REC_STORAGE`` when it is set (the cluster's storage root,
set in ``cluster.yaml`` and ``jobs/runtime_env.yaml``); under ``ray job submit`` without it, a relative
run folder is refused: it would land in Ray's unpacked copy of the code and vanish with it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ray_rec.errors import InputError

STORAGE_ENV = "RAY_REC_STORAGE"   # the cluster's storage root: relative run folders resolve against it
CACHE_ENV = "RAY_REC_CACHE"       # node-local cache: run workspaces and copies of models read by workers
JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray in the driver of a `ray job submit` entrypoint
RECORD = "stage.json"
_URI = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_WORKSPACE_MARK = ".ray_rec_run"  # in a workspace: the URI it mirrors


def is_uri(text: str | Path) -> bool:
    """True for ``scheme://...`` other than ``file://``."""
    m = _URI.match(str(text))
    return bool(m) and m.group(1).lower() != "file"


def cache_root() -> Path:
    """This node's cache folder (``RAY_REC_CACHE``, default ``~/.cache/ray_rec``)."""
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/ray_rec").expanduser()


def resolve_run(run: str | Path) -> str:
    """The run folder as an absolute local path or a URI (see the module docstring for relative ones)."""
    text = str(run).strip()
    if text.lower().startswith("file://"):
        text = text[len("file://"):]
    if is_uri(text):
        return text.rstrip("/")
    text = os.path.expanduser(text)
    if os.path.isabs(text):
        return os.path.normpath(text)
    root = os.environ.get(STORAGE_ENV, "").strip()
    if root:
        if not is_uri(root) and not os.path.isabs(os.path.expanduser(root)):
            raise InputError(f"{STORAGE_ENV}={root!r} must be an absolute path or a URI (s3://bucket/prefix)")
        base = resolve_run(root)
        return f"{base}/{text}" if is_uri(base) else os.path.normpath(os.path.join(base, text))
    if os.environ.get(JOB_ENV):
        raise InputError(f"run folder {run!r} is relative, and under `ray job submit` it would land in Ray's "
                         f"temporary copy of the code and be lost; pass an absolute path on shared storage or a "
                         f"URI (--run s3://bucket/runs/x), or set {STORAGE_ENV} for the cluster")
    return str(Path(text).resolve())


@functools.lru_cache(maxsize=32)
def _filesystem(uri: str):
    import pyarrow as pa
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, ValueError) as exc:
        scheme = _URI.match(uri).group(1) if _URI.match(uri) else uri
        raise InputError(f"run folder {uri}: storage scheme {scheme!r} is not known ({exc}); use a local path or "
                         "a URI such as s3://bucket/prefix, gs://bucket/prefix, abfs://container@account/prefix") from None
    except OSError as exc:  # e.g. a bucket region that cannot be resolved
        raise InputError(f"run folder {uri}: cannot open the storage ({_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


class RunStorage:
    """One run folder: where it lives (``uri``), the local folder stages use (``local``), and the
    transfers between the two. Local and shared-mount runs have ``remote == False`` and transfer nothing."""

    def __init__(self, run: str | Path):
        uri = resolve_run(run)
        workspace_of = _workspace_uri(Path(uri)) if not is_uri(uri) else None
        if workspace_of:  # a workspace path handed back in (e.g. a config built from RunPaths.root)
            uri = workspace_of
        self.uri = uri
        self.remote = is_uri(uri)
        if self.remote:
            digest = hashlib.sha256(uri.encode()).hexdigest()[:12]
            slug = re.sub(r"[^A-Za-z0-9._-]+", "_", uri.split("://", 1)[1])[-48:].strip("_")
            self.local = cache_root() / "runs" / f"{slug}-{digest}"
            _WORKSPACES[str(self.local.resolve())] = uri
        else:
            self.local = Path(uri)

    # --- names -------------------------------------------------------------------------------------
    def rel(self, path: str | Path) -> str:
        """``path`` (inside ``local``) relative to the run folder, as posix text."""
        return Path(path).resolve().relative_to(self.local.resolve()).as_posix()

    def contains(self, path: str | Path) -> bool:
        try:
            self.rel(path)
            return True
        except ValueError:
            return False

    def uri_of(self, path: str | Path) -> str:
        """Where ``path`` (inside ``local``) lives: its URI for a remote run, the path itself otherwise."""
        if not self.remote:
            return str(path)
        rel = self.rel(path)
        return self.uri if rel == "." else f"{self.uri}/{rel}"

    @property
    def fs(self):
        return _filesystem(self.uri)[0]

    def _remote(self, path: str | Path) -> str:
        base = _filesystem(self.uri)[1].rstrip("/")
        rel = self.rel(path)
        return base if rel == "." else f"{base}/{rel}"

    # --- set-up ------------------------------------------------------------------------------------
    def check(self) -> None:
        """Refuse, in one line naming the run folder, storage that cannot hold the run: an unknown scheme,
        a bucket that does not exist or cannot be reached with the credentials at hand, a read-only
        folder. Writes nothing."""
        if not self.remote:
            existing = self.local
            while not existing.exists() and existing != existing.parent:
                existing = existing.parent
            if not existing.is_dir():
                raise InputError(f"run folder {self.uri}: {existing} is not a folder")
            if not os.access(existing, os.W_OK | os.X_OK):
                raise InputError(f"run folder {self.uri}: {existing} is not writable (a read-only mount?); "
                                 "pass a writable path or a URI")
            return
        import pyarrow.fs as pafs

        fs, path = _filesystem(self.uri)
        bucket = path.split("/", 1)[0]
        try:
            info = fs.get_file_info(bucket)
        except OSError as exc:
            raise InputError(f"run folder {self.uri}: cannot reach the storage ({_one_line(exc)}); check the "
                             "credentials and endpoint in the environment (for S3: AWS_ACCESS_KEY_ID, "
                             "AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, or an instance profile)") from None
        if info.type == pafs.FileType.NotFound:
            raise InputError(f"run folder {self.uri}: bucket {bucket!r} does not exist (or these credentials "
                             "cannot see it); create it first")
        self._mark_workspace()

    def _mark_workspace(self) -> None:
        """Create the workspace with a note of the URI it mirrors (so its path, handed back as a run
        folder, still means the remote run)."""
        mark = self.local / _WORKSPACE_MARK
        if not mark.is_file():
            self.local.mkdir(parents=True, exist_ok=True)
            mark.write_text(self.uri + "\n")

    def train_storage(self, folder: str | Path) -> tuple[str, object | None]:
        """``(storage_path, storage_filesystem)`` for Ray Train / Tune runs under ``folder``."""
        if not self.remote:
            return str(folder), None
        return self._remote(folder), self.fs

    # --- transfers ---------------------------------------------------------------------------------
    def exists_remote(self, path: str | Path) -> bool:
        import pyarrow.fs as pafs

        if not self.remote:
            return Path(path).exists()
        return self.fs.get_file_info(self._remote(path)).type != pafs.FileType.NotFound

    def read_remote_bytes(self, path: str | Path) -> bytes | None:
        """The bytes of a remote file, None when it does not exist."""
        import pyarrow.fs as pafs

        remote = self._remote(path)
        if self.fs.get_file_info(remote).type != pafs.FileType.File:
            return None
        with self.fs.open_input_stream(remote) as f:
            return f.read()

    def pull(self, path: str | Path) -> bool:
        """Replace the local copy of ``path`` (file or folder) with the stored one; remove it locally when
        storage has none. Returns whether storage had it."""
        import pyarrow.fs as pafs

        path = Path(path)
        remote = self._remote(path)
        kind = self.fs.get_file_info(remote).type
        if kind == pafs.FileType.NotFound:
            _remove(path)
            return False
        self._mark_workspace()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".pull", dir=path.parent))
        try:
            target = tmp / path.name
            if kind == pafs.FileType.Directory:
                target.mkdir()
            pafs.copy_files(remote, str(target), source_filesystem=self.fs,
                            destination_filesystem=pafs.LocalFileSystem(), use_threads=True)
            _remove(path)
            os.replace(target, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return True

    def push(self, folder: str | Path) -> None:
        """Upload ``folder`` (a stage's folder) to storage, its ``stage.json`` last."""
        import pyarrow.fs as pafs

        folder = Path(folder)
        self._mark_workspace()
        local = pafs.LocalFileSystem()
        remote = self._remote(folder)
        self.fs.create_dir(remote, recursive=True)
        for child in sorted(folder.iterdir()):
            if child.name == RECORD or child.name.startswith("."):
                continue
            if child.is_dir():
                self.fs.create_dir(f"{remote}/{child.name}", recursive=True)
            pafs.copy_files(str(child), f"{remote}/{child.name}", source_filesystem=local,
                            destination_filesystem=self.fs, use_threads=True)
        if (folder / RECORD).is_file():
            pafs.copy_files(str(folder / RECORD), f"{remote}/{RECORD}", source_filesystem=local,
                            destination_filesystem=self.fs)

    def delete(self, path: str | Path) -> None:
        """Delete ``path`` (file or folder) in storage; nothing when it is not there."""
        import pyarrow.fs as pafs

        remote = self._remote(path)
        kind = self.fs.get_file_info(remote).type
        if kind == pafs.FileType.Directory:
            self.fs.delete_dir(remote)
        elif kind == pafs.FileType.File:
            self.fs.delete_file(remote)

    def ref(self, path: str | Path, key: str) -> Any:
        """What a worker on any node opens with :func:`localize` to read ``path``: the path itself for a
        local or shared run, else a :class:`ray_rec.nodecache.Ref` carrying ``key`` (a content hash of what ``path`` holds)."""
        from ray_rec.nodecache import Ref

        if not self.remote or not self.contains(path):
            return str(path)
        return Ref(self.uri_of(path), key)


_WORKSPACES: dict[str, str] = {}  # workspace folder -> the URI it mirrors, for this process


def _workspace_uri(path: Path) -> str | None:
    """The URI a workspace folder mirrors, None for any other folder."""
    known = _WORKSPACES.get(str(path.resolve()))
    if known:
        return known
    mark = path / _WORKSPACE_MARK
    try:
        if mark.is_file() and path.resolve().is_relative_to((cache_root() / "runs").resolve()):
            return mark.read_text().strip() or None
    except OSError:
        return None
    return None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@functools.lru_cache(maxsize=64)
def _storage(uri: str, cache: str) -> RunStorage:
    return RunStorage(uri)


def storage_of(run: str | Path) -> RunStorage:
    """The :class:`RunStorage` of run folder ``run`` (one per resolved location and cache folder)."""
    return _storage(resolve_run(run), str(cache_root()))
