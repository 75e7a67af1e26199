"""One small wrapper over an fsspec filesystem rooted at an output URI.

Every write goes to a hidden temporary name first and is then renamed into place, so a
reader (or a crashed run) never sees half a file. Relative keys are validated: nothing a
caller passes can address a path outside the root.
"""

from __future__ import annotations

import io
import posixpath
import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

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
    if _is_local(fs):
        root = str(Path(root).resolve())
    return fs, root.rstrip("/") or "/"


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return bool({"file", "local"} & set(protocols))


def join_uri(base: str, *parts: str) -> str:
    """Join path parts onto a URI or path with ``/``."""
    out = base.rstrip("/")
    for p in parts:
        out = f"{out}/{p.strip('/')}"
    return out


def check_key(key: str) -> str:
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
        self.local = _is_local(self.fs)

    def __repr__(self) -> str:
        return f"Store({redact_uri(self.uri)!r})"

    def path(self, key: str) -> str:
        """Filesystem path of a validated relative key (never outside the root)."""
        return posixpath.join(self.root, check_key(key))

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
        """Write to a hidden temp name beside the target, then rename over it."""
        target = self.path(key)
        parent = posixpath.dirname(target)
        tmp = posixpath.join(parent, f".tmp-{uuid.uuid4().hex}-{posixpath.basename(target)}")
        if self.local:
            self.fs.makedirs(parent, exist_ok=True)
        with self.fs.open(tmp, "wb") as f:
            f.write(data)
            if self.local:
                f.flush()
        try:
            self.fs.mv(tmp, target)
        except Exception:
            self.fs.rm(tmp)
            raise

    def write_parquet(self, key: str, table: pa.Table) -> None:
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        self.write_bytes(key, buf.getvalue())

    def read_parquet(self, key: str) -> pa.Table:
        with self.fs.open(self.path(key), "rb") as f:
            return pq.read_table(f)

    def remove(self, key: str) -> None:
        p = self.path(key)
        if self.fs.exists(p):
            self.fs.rm(p)

    def clean_temp(self, prefix: str) -> int:
        """Remove leftover ``.tmp-*`` files of a crashed run under ``prefix``; returns how many."""
        d = self.path(prefix)
        if not self.fs.exists(d):
            return 0
        n = 0
        for p in self.fs.ls(d, detail=False):
            if posixpath.basename(p.rstrip("/")).startswith(".tmp-"):
                self.fs.rm(p)
                n += 1
        return n
