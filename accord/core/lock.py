"""One writing run per output: a lease object in the output itself, so it works on every store.

``<root>/_state/lock.json`` is created only where absent (``open(..., "xb")``: ``O_EXCL`` on a
local path, a conditional put on S3 (``If-None-Match``) and GCS (``ifGenerationMatch=0``)). It
names its holder (host, pid, run id, since) and carries a heartbeat that a daemon thread renews
every ``HEARTBEAT_S``. A second run on the same output refuses at once, or after ``wait_s``, with
:class:`OutputBusyError`: one line naming the holder, because two runs on one output would overwrite
each other's parts and sweep each other's files. A lock whose holder is dead is taken over with
a warning line: on the same host when its pid is gone (at once), on any host or store when its
heartbeat is older than ``LEASE_S``. A filesystem without exclusive create falls back to
check-then-write and a read-back of the owner token (a narrow race, logged once).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from accord.core.errors import UserError
from accord.core.storage import Store, atomic_write_bytes, pid_alive, redact_uri

log = logging.getLogger(__name__)

LOCK_KEY = "_state/lock.json"
LEASE_S = 300.0  # a holder whose heartbeat is older than this is dead, whatever its host
HEARTBEAT_S = 30.0
POLL_S = 1.0

_HELD: set[str] = set()  # tokens of the locks this process holds (a lock naming this pid but
# not held here was left by an earlier, failed run of this process: stale)


class OutputBusyError(UserError, RuntimeError):
    """Another live run holds the output; the message names it (the CLI prints it as one line)."""


@dataclass
class Holder:
    """What a lock file records about the run holding it."""

    host: str
    pid: int
    run_id: str
    kind: str
    since: float
    heartbeat: float
    token: str

    @classmethod
    def parse(cls, data: bytes) -> Holder | None:
        try:
            d = json.loads(data)
            return cls(str(d["host"]), int(d["pid"]), str(d["run_id"]), str(d["kind"]),
                       float(d["since"]), float(d["heartbeat"]), str(d["token"]))  # fmt: skip
        except (ValueError, KeyError, TypeError):
            return None

    def dead(self, now: float) -> str:
        """Why this holder is dead, or ``""`` while it may be alive."""
        if now - self.heartbeat > LEASE_S:
            return f"no heartbeat for {now - self.heartbeat:.0f} s (lease {LEASE_S:.0f} s)"
        if self.host == socket.gethostname():
            if not pid_alive(self.pid):
                return f"pid {self.pid} is not running on this host"
            if self.pid == os.getpid() and self.token not in _HELD:
                return "left by an earlier run of this process"
        return ""

    def describe(self, now: float) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return (f"{self.kind} run {self.run_id} (host {self.host}, pid {self.pid}, since {since}, "
                f"heartbeat {now - self.heartbeat:.0f} s ago)")  # fmt: skip


class OutputLock:
    """The lock of one output root. ``with OutputLock(uri, "ingest") as lock: lock.acquire(run_id)``:
    acquiring is a separate call so a run takes it just before its first write (a run refused
    earlier, e.g. for missing weights, leaves the output untouched); leaving the block releases."""

    def __init__(self, uri: str, kind: str, wait_s: float = 0.0) -> None:
        self.uri, self.kind, self.wait_s = uri, kind, wait_s
        self.store = Store(uri)
        self.path = self.store.path(LOCK_KEY)
        self.holder: Holder | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # -- acquire / release ----------------------------------------------------------------
    def acquire(self, run_id: str) -> OutputLock:
        """Hold the output for ``run_id``, taking over a dead holder's lock; :class:`OutputBusyError`
        when a live run still holds it after ``wait_s``."""
        now = time.time()
        me = Holder(socket.gethostname(), os.getpid(), run_id, self.kind, now, now, uuid.uuid4().hex)
        deadline = time.monotonic() + self.wait_s
        waited = False
        while True:
            if self._create(me):
                break
            other = self._read()
            if other is None:  # released between our create and read: try again
                continue
            why = other.dead(time.time())
            if why:
                log.warning("%s: taking over the lock of %s: %s", self._shown(),
                            other.describe(time.time()), why)  # fmt: skip
                self._remove_if(other.token)
                continue
            if time.monotonic() >= deadline:
                raise OutputBusyError(
                    f"{self._shown()} is in use by {other.describe(time.time())}; wait for it to finish "
                    f"(a dead run's lock is taken over: at once on its host, after {LEASE_S:.0f} s anywhere)"
                )
            if not waited:
                log.warning("%s is in use by %s; waiting up to %.0f s", self._shown(),
                            other.describe(time.time()), self.wait_s)  # fmt: skip
                waited = True
            time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
        self.holder = me
        _HELD.add(me.token)
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="accord-lock-heartbeat", daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if it is still ours (idempotent)."""
        if self.holder is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._remove_if(self.holder.token)
        _HELD.discard(self.holder.token)
        self.holder = None

    # -- the lock object ------------------------------------------------------------------
    def _shown(self) -> str:
        return redact_uri(self.uri)

    def _encode(self, holder: Holder) -> bytes:
        return json.dumps(asdict(holder)).encode()

    def _create(self, me: Holder) -> bool:
        fs = self.store.fs
        if self.store.local:
            fs.makedirs(posixpath.dirname(self.path), exist_ok=True)
        try:
            with fs.open(self.path, "xb") as f:
                f.write(self._encode(me))
            return True
        except FileExistsError:
            return False
        except (NotImplementedError, ValueError):  # no exclusive create on this filesystem
            log.info("%s: no exclusive create; locking by check, write and read-back", self._shown())
            if fs.exists(self.path):
                return False
            atomic_write_bytes(self.path, self._encode(me), fs)
            got = self._read()
            return got is not None and got.token == me.token

    def _read(self) -> Holder | None:
        fs = self.store.fs
        try:
            data = fs.cat_file(self.path)
            holder = Holder.parse(data)
            if holder is None:  # a holder killed while writing it: its age is the file's
                written = fs.modified(self.path).timestamp()
                holder = Holder("?", 0, "?", "?", written, written, "")
        except FileNotFoundError:
            return None
        return holder

    def _remove_if(self, token: str) -> None:
        """Remove the lock if it still holds ``token`` (so a taker never removes a newer holder's)."""
        current = self._read()
        if current is not None and current.token == token:
            with contextlib.suppress(FileNotFoundError):  # its holder released it meanwhile
                self.store.fs.rm(self.path)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            holder = self.holder
            if holder is None:
                return
            current = self._read()
            if current is None or current.token != holder.token:
                log.error("%s: this run no longer holds the output's lock (now: %s)", self._shown(),
                          current.describe(time.time()) if current else "none")  # fmt: skip
                return
            holder.heartbeat = time.time()
            try:
                atomic_write_bytes(self.path, self._encode(holder), self.store.fs)
            except OSError as e:  # a transient store error: the lease tolerates missed beats
                log.warning("%s: lock heartbeat failed: %s", self._shown(), e)
