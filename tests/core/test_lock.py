"""One writing run per output: a second waits or refuses naming the first; a dead run's lock is
taken over; a live run's temp files are never swept."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import fsspec
import pytest

from accord.core.lock import LEASE_S, LOCK_KEY, OutputBusyError, OutputLock
from accord.core.manifest import ManifestStore

from ..holders import first_run_holding


def test_a_second_run_refuses_while_the_first_lives_and_takes_over_once_it_died(tmp_path, caplog) -> None:
    """A second ingest's start-up sweep used to delete the first run's in-progress temp file (whose
    commit then failed), and both wrote the same parts. Now the second refuses, in bounded time,
    with one line naming the first; the first's file survives; once the first is dead (killed:
    its lock left behind) the next run takes the lock over with a log line and sweeps its file."""
    out = tmp_path / "out"
    with first_run_holding(out) as (first, tmp):
        t0 = time.monotonic()
        with pytest.raises(OutputBusyError) as e:
            OutputLock(str(out), "ingest", wait_s=0.5).acquire("run-second")
        assert 0.5 <= time.monotonic() - t0 < 10, "waits as long as asked, then refuses"
        msg = str(e.value)
        for part in (str(out), "ingest run run-first", f"pid {first.pid}", socket.gethostname(), "since "):
            assert part in msg, msg
        assert "\n" not in msg
        assert ManifestStore(str(out)).clean_temp() == 0 and tmp.exists(), "a live run's file is kept"

    with caplog.at_level(logging.WARNING, "accord.core.lock"), OutputLock(str(out), "ingest") as lock:
        lock.acquire("run-third")
        assert "taking over the lock of ingest run run-first" in caplog.text
        assert f"pid {first.pid} is not running on this host" in caplog.text
        assert json.loads((out / LOCK_KEY).read_text())["run_id"] == "run-third"
        assert ManifestStore(str(out)).clean_temp() == 1 and not tmp.exists(), "a dead run's file goes"
    assert not (out / LOCK_KEY).exists(), "released on leaving the block"


def test_on_an_object_store_the_lock_is_a_lease() -> None:
    """Remote roots: create-if-absent (conditional put) plus a heartbeat; a second run waits for the
    first to release, a holder on another host is trusted until its lease expires."""
    uri = "memory://accord-lock-test/out"
    fs = fsspec.filesystem("memory")
    path = f"/accord-lock-test/out/{LOCK_KEY}"
    first = OutputLock(uri, "tokenize").acquire("r1")
    try:
        with pytest.raises(OutputBusyError, match="tokenize run r1"):
            OutputLock(uri, "tokenize").acquire("r2")
        threading.Timer(0.3, first.release).start()
        with OutputLock(uri, "tokenize", wait_s=30) as second:
            second.acquire("r2")  # waits for the first to finish, then holds the output
            assert json.loads(fs.cat_file(path))["run_id"] == "r2"

        now = time.time()
        other = {"host": "elsewhere", "pid": 1, "run_id": "r3", "kind": "tokenize", "since": now,
                 "heartbeat": now, "token": "t3"}  # fmt: skip
        fs.pipe_file(path, json.dumps(other).encode())
        with pytest.raises(OutputBusyError, match="host elsewhere"):
            OutputLock(uri, "tokenize").acquire("r4")  # its pid cannot be checked from here
        fs.pipe_file(path, json.dumps({**other, "heartbeat": now - LEASE_S - 1}).encode())
        with OutputLock(uri, "tokenize") as fourth:
            fourth.acquire("r4")  # the lease expired: taken over
            assert json.loads(fs.cat_file(path))["run_id"] == "r4"
        assert not fs.exists(path)
    finally:
        first.release()
        if fs.exists("/accord-lock-test"):
            fs.rm("/accord-lock-test", recursive=True)
