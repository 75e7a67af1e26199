"""The one storage layer: local paths, ``file://``, ``s3://`` and ``gs://`` through fsspec.

Every write goes to a temporary name first and then appears whole (rename locally, a single
object put remotely), so a reader, or a crashed run, never sees half a file. Two entry points:
:class:`Store`, an output root whose relative keys are validated so nothing a caller passes
can address a path outside it (ingest, the report), and URI functions (:func:`atomic_write_bytes`,
:func:`write_json_atomic`, :func:`read_bytes`, ...) for code that holds full URIs (shards,
checkpoints). Credentials come from the environment and are never logged or written.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import posixpath
import re
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from accord.core.errors import UnreadableFileError

# Parquet is decoded on the calling thread: pyarrow 26's reader threads abort the interpreter at
# exit ("terminate called without an active exception", exit 134) in about half of the processes
# that read a Parquet file with them, after the command has done its work. The files accord reads
# are one source's or one shard's rows; readers of many parts run them in parallel themselves.
PARQUET_THREADS = False

log = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp-"  # a local temp file beside its target: hidden from listings, swept by clean_temp
# A temp name carries its writer: ``.tmp-<host tag>.<pid>.<random>-<target name>``, so a sweep can
# tell a dead run's leftovers from a live run's file in progress (:func:`temp_is_stale`).
_OWNED_TEMP = re.compile(r"^\.tmp-([0-9a-f]{8})\.(\d+)\.[0-9a-f]+-")
# A temp file of a writer on another host cannot be checked for a live process: it is stale once
# nothing has written to it for this long (a live writer streams into its file).
FOREIGN_TEMP_STALE_S = 3600.0
STAGING_PREFIX = "accord-"  # remote targets are staged under the local temp dir with this name
_SAFE_PART = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9._=-]*$")


# ---------------------------------------------------------------- temp files: one owner rule


def host_tag(host: str | None = None) -> str:
    """8 hex digits naming a host in temp names (hostnames may hold any character)."""
    return hashlib.sha1((host or socket.gethostname()).encode()).hexdigest()[:8]


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_name(name: str) -> str:
    """The temp name this process writes ``name`` under: owned by this host and pid."""
    return f"{TEMP_PREFIX}{host_tag()}.{os.getpid()}.{uuid.uuid4().hex[:12]}-{name}"


def temp_is_stale(name: str, mtime: float | None, now: float | None = None) -> bool:
    """The one sweep rule for every writer's temp files (ingest, tokenize, trainer): stale when
    its writer cannot be alive. Same host: the pid named in it is gone. Another host (a shared
    filesystem): nothing written to it for ``FOREIGN_TEMP_STALE_S``. A ``.tmp-`` name without an
    owner (an older accord) is always stale. A live run's file in progress is never stale."""
    if not name.startswith(TEMP_PREFIX):
        return False
    m = _OWNED_TEMP.match(name)
    if m is None:
        return True
    if m.group(1) == host_tag():
        return not pid_alive(int(m.group(2)))
    return mtime is not None and (now or time.time()) - mtime > FOREIGN_TEMP_STALE_S


def sweep_temp(fs: fsspec.AbstractFileSystem, directory: str, staged: bool = False) -> int:
    """Remove the stale temp files (:func:`temp_is_stale`) directly under ``directory``; how many.
    ``staged``: ``directory`` is a shared local temp dir, where only accord's own staged uploads
    (owned names, ``STAGING_PREFIX`` targets) are considered."""
    if not fs.exists(directory):
        return 0
    n = 0
    for info in fs.ls(directory, detail=True):
        name = posixpath.basename(info["name"].rstrip("/"))
        if info.get("type") == "directory" or not name.startswith(TEMP_PREFIX):
            continue
        m = _OWNED_TEMP.match(name)
        if staged and not (m and name[m.end() :].startswith(STAGING_PREFIX)):
            continue
        mtime = info.get("mtime")
        if not temp_is_stale(name, float(mtime) if isinstance(mtime, int | float) else None):
            continue
        try:
            fs.rm(info["name"])
        except FileNotFoundError:  # its writer finished, or another sweep got there first
            continue
        shown = info["name"] if is_local(fs) else redact_uri(fs.unstrip_protocol(info["name"]))
        log.info("removed a dead run's temp file %s", shown)
        n += 1
    return n


def redact_uri(uri: str) -> str:
    """The URI without user info, password or query string (where signed tokens live)."""
    parts = urlsplit(uri)
    if not parts.scheme or len(parts.scheme) == 1:  # plain path (or a Windows drive letter)
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def open_fs(uri: str, **storage_options: Any) -> tuple[fsspec.AbstractFileSystem, str]:
    """``(filesystem, root path in that filesystem)`` for a local path or a URL.

    Credentials are whatever the filesystem finds in the environment (AWS_*, GOOGLE_*,
    instance metadata, config files); we neither read nor store them.
    """
    if "://" not in uri:
        uri = str(Path(uri).expanduser().resolve())
    fs, root = fsspec.core.url_to_fs(uri, **storage_options)
    if is_local(fs):
        root = str(Path(root).resolve())
    return fs, root.rstrip("/") or "/"


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """True for the local filesystem (rename is atomic there; remote object puts are)."""
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return bool({"file", "local"} & set(protocols))


def join_uri(base: str, *parts: str) -> str:
    """Join path parts onto a URI or path with ``/``."""
    out = base.rstrip("/")
    for p in parts:
        out = f"{out}/{p.strip('/')}"
    return out


def check_output_key(key: str) -> str:
    """Validate a relative output key: ``a/b/c.ext`` with plain components only."""
    if not key or key.startswith("/") or "\\" in key:
        raise ValueError(f"unsafe output key {key!r}")
    for part in key.split("/"):
        if not _SAFE_PART.match(part) or part in (".", ".."):
            raise ValueError(f"unsafe output key {key!r}")
    return key


class Store:
    """An output root (local dir, ``s3://``, ``gs://``...) with atomic writes under it."""

    def __init__(self, uri: str, **storage_options: Any) -> None:
        self.uri = uri
        self.fs, self.root = open_fs(uri, **storage_options)
        self.local = is_local(self.fs)

    def __repr__(self) -> str:
        return f"Store({redact_uri(self.uri)!r})"

    def path(self, key: str) -> str:
        """Filesystem path of a validated relative key (never outside the root)."""
        return posixpath.join(self.root, check_output_key(key))

    def url(self, key: str) -> str:
        """Full URL of ``key`` (what other components and pyarrow/duckdb open)."""
        p = self.path(key)
        return p if self.local else self.fs.unstrip_protocol(p)

    def exists(self, key: str) -> bool:
        return self.fs.exists(self.path(key))

    def makedirs(self, key: str) -> None:
        if self.local:
            self.fs.makedirs(self.path(key), exist_ok=True)

    def list(self, prefix: str, suffix: str = "") -> list[str]:
        """Keys (relative to the root) of visible files directly under ``prefix``, sorted."""
        d = self.path(prefix)
        if not self.fs.exists(d):
            return []
        out = []
        for p in self.fs.ls(d, detail=False):
            name = posixpath.basename(p.rstrip("/"))
            if name.startswith((".", "_")) or not name.endswith(suffix):
                continue
            out.append(f"{prefix.rstrip('/')}/{name}")
        return sorted(out)

    def read_bytes(self, key: str) -> bytes:
        with self.fs.open(self.path(key), "rb") as f:
            return f.read()

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` atomically (:func:`atomic_write_bytes`)."""
        atomic_write_bytes(self.path(key), data, self.fs)

    def write_parquet(self, key: str, table: pa.Table) -> None:
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        self.write_bytes(key, buf.getvalue())

    def read_parquet(self, key: str) -> pa.Table:
        """The table at ``key``; :class:`UnreadableFileError` naming it when it is not whole Parquet."""
        with self.fs.open(self.path(key), "rb") as f:
            data = f.read()
        return _parquet_table(data, self.url(key))

    def check_parquet(self, key: str) -> None:
        """Raise :class:`UnreadableFileError` unless ``key`` ends in a whole Parquet footer: a cheap check
        (the footer only, a ranged read on object stores) that a part is not truncated."""
        try:
            with self.fs.open(self.path(key), "rb") as f:
                pq.read_metadata(f)
        except pa.ArrowException as e:
            raise unreadable(self.url(key), e) from e

    def remove(self, key: str) -> None:
        p = self.path(key)
        if self.fs.exists(p):
            self.fs.rm(p)

    def clean_temp(self, *prefixes: str) -> int:
        """Sweep the stale temp files (:func:`temp_is_stale`) under each of ``prefixes`` (``""``:
        the root), and for a remote root this host's staged uploads; how many. A live run's
        files in progress are kept, so a run may call this at start-up while another writes."""
        n = sum(sweep_temp(self.fs, self.path(p) if p else self.root) for p in prefixes)
        if not self.local:
            n += sweep_temp(fsspec.filesystem("file"), tempfile.gettempdir(), staged=True)
        return n


# ---------------------------------------------------------------- URI functions


class AtomicFile:
    """A binary file that appears at ``target`` only on :meth:`commit`.

    Locally it is written under a hidden ``.tmp-*`` name beside the target (owned by this process:
    :func:`temp_name`) and renamed over it;
    remote targets are staged in a local temp file and uploaded in one put, which object stores
    make atomic. Large outputs (shard tars) stream into :attr:`file`. ``target`` is a URI, or a
    path inside ``fs`` when a filesystem is given (a :class:`Store`'s, with its options).
    """

    def __init__(self, target: str, fs: fsspec.AbstractFileSystem | None = None) -> None:
        if fs is None:
            fs, target = fsspec.core.url_to_fs(target)
        self.fs, self.path = fs, target
        if is_local(fs):
            parent, name = os.path.split(self.path)
            os.makedirs(parent or ".", exist_ok=True)
            self.tmp = os.path.join(parent, temp_name(name))
        else:
            name = posixpath.basename(self.path.rstrip("/"))
            self.tmp = os.path.join(tempfile.gettempdir(), temp_name(f"{STAGING_PREFIX}{name}"))
        self.file = open(self.tmp, "wb")  # noqa: SIM115 - closed in commit/abort

    def commit(self) -> None:
        """Publish the file; whatever fails (flush, fsync, rename, upload), no temp file is left."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            if is_local(self.fs):
                os.replace(self.tmp, self.path)
            else:
                self.fs.put_file(self.tmp, self.path)
        finally:
            self.abort()  # after the rename there is nothing left to drop; else the temp file goes

    def abort(self) -> None:
        """Drop the temp file, even when closing it fails (a full disk fails the final flush)."""
        try:
            self.file.close()
        finally:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)


def atomic_write_bytes(
    target: str | os.PathLike, data: bytes, fs: fsspec.AbstractFileSystem | None = None
) -> None:
    """Write ``data`` so readers see the old file or the whole new one, never a part."""
    f = AtomicFile(str(target), fs)
    try:
        f.file.write(data)
    except BaseException:
        f.abort()
        raise
    f.commit()


def write_json_atomic(uri: str | os.PathLike, obj: Any) -> None:
    """``obj`` as indented JSON at ``uri`` (local path or URL), written atomically."""
    atomic_write_bytes(uri, json.dumps(obj, indent=2, default=str).encode())


def unreadable(url: str, error: BaseException) -> UnreadableFileError:
    """One line naming ``url`` and what is wrong with it (pyarrow's own message names no file)."""
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    reason = reason.replace("Could not open Parquet input source '<Buffer>': ", "")
    return UnreadableFileError(f"{redact_uri(url)}: not a readable Parquet file ({reason})")


def _parquet_table(data: bytes, url: str, columns: list[str] | None = None) -> pa.Table:
    try:
        return pq.read_table(io.BytesIO(data), columns=columns, use_threads=PARQUET_THREADS)
    except pa.ArrowException as e:
        raise unreadable(url, e) from e


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def exists(uri: str | os.PathLike) -> bool:
    fs, path = fsspec.core.url_to_fs(str(uri))
    return fs.exists(path)


def read_bytes(uri: str | os.PathLike) -> bytes:
    fs, path = fsspec.core.url_to_fs(str(uri))
    return fs.cat_file(path)


def read_json(uri: str | os.PathLike) -> Any:
    return json.loads(read_bytes(uri))


def read_parquet(uri: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    """The table at ``uri``; :class:`UnreadableFileError` naming it when it is not whole Parquet."""
    return _parquet_table(read_bytes(uri), str(uri), columns)


def remove(uri: str | os.PathLike) -> None:
    """Delete ``uri`` if it exists."""
    fs, path = fsspec.core.url_to_fs(str(uri))
    if fs.exists(path):
        fs.rm(path)


def list_names(uri: str | os.PathLike) -> list[str]:
    """Base names of the entries directly under ``uri`` (``[]`` when it does not exist), sorted."""
    fs, path = fsspec.core.url_to_fs(str(uri))
    if not fs.exists(path):
        return []
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))
