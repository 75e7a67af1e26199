"""Deliberately slow storage for the loader benches: ``slowfile://`` is the local filesystem
behind a per-open latency and a bandwidth cap, like an object store's GET (first byte after
``latency_s``, then ``mb_per_s``). Registered with fsspec, so every reader that takes a URL
(the shard stream, the markers, the Parquet tables) goes through it."""

from __future__ import annotations

import time
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

PROTOCOL = "slowfile"


class Throttled:
    """A read-only file whose reads pay the bandwidth cap (the open already paid the latency)."""

    def __init__(self, f: Any, mb_per_s: float) -> None:
        self.f, self.mb_per_s = f, mb_per_s

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        time.sleep(len(data) / (self.mb_per_s * 1e6))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)

    def __enter__(self) -> Throttled:
        return self

    def __exit__(self, *exc: object) -> None:
        self.f.close()


class SlowFileSystem(LocalFileSystem):
    protocol = (PROTOCOL,)
    latency_s = 0.1
    mb_per_s = 10.0

    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        path = str(path)
        if path.startswith(f"{PROTOCOL}://"):
            path = path[len(PROTOCOL) + 3 :]
        return LocalFileSystem._strip_protocol(path)

    def _open(self, path: str, mode: str = "rb", **kw: Any) -> Any:
        f = super()._open(path, mode, **kw)
        if "r" not in mode:
            return f
        time.sleep(self.latency_s)
        return Throttled(f, self.mb_per_s)


def slow_url(path: str, latency_s: float, mb_per_s: float) -> str:
    """``path`` as a ``slowfile://`` URL with these limits (one setting per process)."""
    SlowFileSystem.latency_s, SlowFileSystem.mb_per_s = latency_s, mb_per_s
    fsspec.register_implementation(PROTOCOL, SlowFileSystem, clobber=True)
    return f"{PROTOCOL}://{path}"
