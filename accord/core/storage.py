"""The one storage layer: local paths, ``file://``, ``s3://`` and ``gs://`` through fsspec.

Every write goes to a temporary name first and then appears whole (rename locally, a single
object put remotely), so a reader, or a crashed run, never sees half a file. Two entry points:
:class:`Store`, an output root whose relative keys are validated so nothing a caller passes
can address a path outside it (ingest, the report), and URI functions (:func:`atomic_write_bytes`,
:func:`write_json_atomic`, :func:`read_bytes`, ...) for code that holds full URIs (shards,
checkpoints). Credentials come from the environment and are never logged or written.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

# Parquet is decoded on the calling thread: pyarrow 26's reader threads abort the interpreter at
# exit ("terminate called without an active exception", exit 134) in about half of the processes
# that read a Parquet file with them, after the command has done its work. The files accord reads
# are one source's or one shard's rows; readers of many parts run them in parallel themselves.
PARQUET_THREADS = False

TEMP_PREFIX = ".tmp-"  # a local temp file beside its target: hidden from listings, swept by clean_temp
_SAFE_PART = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9._=-]*$")


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
        with self.fs.open(self.path(key), "rb") as f:
            return pq.read_table(io.BytesIO(f.read()), use_threads=PARQUET_THREADS)

    def remove(self, key: str) -> None:
        p = self.path(key)
        if self.fs.exists(p):
            self.fs.rm(p)

    def clean_temp(self, prefix: str) -> int:
        """Remove a crashed run's leftover temp files (``TEMP_PREFIX``) under ``prefix``; how many."""
        d = self.path(prefix)
        if not self.fs.exists(d):
            return 0
        n = 0
        for p in self.fs.ls(d, detail=False):
            if posixpath.basename(p.rstrip("/")).startswith(TEMP_PREFIX):
                self.fs.rm(p)
                n += 1
        return n


# ---------------------------------------------------------------- URI functions


class AtomicFile:
    """A binary file that appears at ``target`` only on :meth:`commit`.

    Locally it is written under a hidden ``.tmp-*`` name beside the target and renamed over it;
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
            self.tmp = os.path.join(parent, f"{TEMP_PREFIX}{uuid.uuid4().hex}-{name}")
        else:
            self.tmp = os.path.join(tempfile.gettempdir(), f"accord-{uuid.uuid4().hex}.tmp")
        self.file = open(self.tmp, "wb")  # noqa: SIM115 - closed in commit/abort

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        try:
            if is_local(self.fs):
                os.replace(self.tmp, self.path)
            else:
                self.fs.put_file(self.tmp, self.path)
        finally:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)

    def abort(self) -> None:
        self.file.close()
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
    return pq.read_table(io.BytesIO(read_bytes(uri)), columns=columns, use_threads=PARQUET_THREADS)


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
