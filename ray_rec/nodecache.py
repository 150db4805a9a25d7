"""Reading a run's storage from any node: what workers use, not drivers.

* :class:`Ref` / :func:`localize` -- a model or file in remote storage, copied once per node into the
  node cache (``RAY_REC_CACHE/objects/``), keyed by the content of the stage record that vouches for it;
* :func:`marker_exists` / :func:`write_marker` -- small marker files at a path or a URI (fault injection);
* :func:`open_input` / :func:`input_info` -- inputs made outside any stage (raw dumps) at a path or a URI.

The run folder itself (workspace, pulls and pushes) is :mod:`ray_rec.storage`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ray_rec.errors import InputError
from ray_rec.storage import _filesystem, cache_root, is_uri


@dataclass(frozen=True)
class Ref:
    """A file or folder in remote storage, with a content key: what a worker on any node can open."""

    uri: str
    key: str

    def __str__(self) -> str:
        return self.uri


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def localize(ref: str | Path | Ref) -> Path:
    """A local path to read ``ref`` from on this node: a local path as it is; a :class:`Ref` copied from
    storage into this node's cache the first time any process of the node asks (keyed by its content),
    and reused after."""
    if not isinstance(ref, Ref):
        return Path(ref)
    import pyarrow.fs as pafs

    name = ref.uri.rstrip("/").rsplit("/", 1)[-1]
    folder = cache_root() / "objects" / hashlib.sha256(f"{ref.uri}\n{ref.key}".encode()).hexdigest()[:20]
    dest = folder / name
    with _locked(folder.with_suffix(".lock")):
        if dest.exists():
            return dest
        fs, remote = _filesystem(ref.uri)
        kind = fs.get_file_info(remote).type
        if kind == pafs.FileType.NotFound:
            raise InputError(f"{ref.uri} does not exist in storage")
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".", suffix=".pull", dir=folder))
        try:
            target = tmp / name
            if kind == pafs.FileType.Directory:
                target.mkdir()
            pafs.copy_files(remote, str(target), source_filesystem=fs,
                            destination_filesystem=pafs.LocalFileSystem(), use_threads=True)
            os.replace(target, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def marker_exists(location: str) -> bool:
    """Whether the small marker file at ``location`` (a path or a URI) exists."""
    if not is_uri(location):
        return os.path.exists(location)
    import pyarrow.fs as pafs

    fs, path = _filesystem(location)
    return fs.get_file_info(path).type == pafs.FileType.File


def write_marker(location: str, text: str) -> None:
    """Write a small marker file at ``location`` (a path or a URI)."""
    if not is_uri(location):
        Path(location).parent.mkdir(parents=True, exist_ok=True)
        Path(location).write_text(text)
        return
    fs, path = _filesystem(location)
    with fs.open_output_stream(path) as f:
        f.write(text.encode())


# --- external inputs (raw dumps, ...) that may live in storage ---------------------------------------

def open_input(location: str | Path):
    """A seekable binary file on a local path or a URI (``s3://bucket/raw/reviews.json.gz``): what a
    Ray task opens to read its byte range of a raw dump wherever the dump is stored."""
    if not is_uri(location):
        return open(location, "rb")
    fs, path = _filesystem(str(location))
    return fs.open_input_file(path)


def input_info(location: str | Path) -> tuple[str, int, int] | None:
    """(kind 'file' or 'dir', size in bytes, modification time in ns) of a path or URI, None when it does
    not exist."""
    import pyarrow.fs as pafs

    if is_uri(location):
        fs, path = _filesystem(str(location))
        info = fs.get_file_info(path)
    else:
        info = pafs.LocalFileSystem().get_file_info(str(Path(location).expanduser()))
    if info.type == pafs.FileType.NotFound:
        return None
    mtime = info.mtime_ns or 0
    return ("dir" if info.type == pafs.FileType.Directory else "file"), int(info.size or 0), int(mtime)
