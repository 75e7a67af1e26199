"""The one storage layer: every atomic write leaves one kind of temp file, owned by its writer,
which a later run sweeps once that writer is dead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pytest

from accord.core.storage import (
    FOREIGN_TEMP_STALE_S,
    STAGING_PREFIX,
    AtomicFile,
    Store,
    UnreadableFileError,
    atomic_write_bytes,
    host_tag,
    read_bytes,
    read_parquet,
    write_json_atomic,
)


def _dead_pid() -> int:
    """The pid of a process that has exited (as a killed run's is)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_dead_runs_temp_files_are_swept_and_a_live_runs_are_kept(tmp_path) -> None:
    """A second run's start-up sweep used to delete every ``.tmp-*`` file, the first (live) run's
    in-progress file too, whose commit then failed. Temp names now carry their writer: only
    those whose writer cannot be alive go."""
    store = Store(str(tmp_path))
    store.write_bytes("runs/a.json", b"{}")
    live = AtomicFile(str(tmp_path / "runs" / "b.json"))  # this process: a live run mid-write
    live.file.write(b"half")
    live.file.flush()
    runs = tmp_path / "runs"
    dead = runs / f".tmp-{host_tag()}.{_dead_pid()}.abc123-c.json"  # a killed run's, on this host
    dead.write_bytes(b"half")
    unowned = runs / ".tmp-0123abcd-d.json"  # an older accord's name: no owner to ask
    unowned.write_bytes(b"half")
    other_host = host_tag("some-other-host")
    fresh = runs / f".tmp-{other_host}.1.abc-e.json"  # another host, still being written
    stale = runs / f".tmp-{other_host}.1.abd-f.json"  # another host, untouched for long
    fresh.write_bytes(b"x")
    stale.write_bytes(b"x")
    old = time.time() - FOREIGN_TEMP_STALE_S - 60
    os.utime(stale, (old, old))
    assert store.list("runs") == ["runs/a.json"], "temp files are invisible to readers"

    assert store.clean_temp("runs") == 3
    assert sorted(p.name for p in runs.iterdir()) == sorted(["a.json", Path(live.tmp).name, fresh.name])
    live.commit()  # the live run is unharmed
    assert (runs / "b.json").read_bytes() == b"half"


def test_remote_writes_stage_locally_and_a_dead_runs_staging_is_swept() -> None:
    staged = Path(tempfile.gettempdir()) / f".tmp-{host_tag()}.{_dead_pid()}.abc-{STAGING_PREFIX}x.tar"
    staged.write_bytes(b"a killed upload")
    try:
        assert Store("memory://accord-sweep-test/out").clean_temp("shards") == 1
        assert not staged.exists()
    finally:
        staged.unlink(missing_ok=True)


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failing_commit_leaves_no_temp_file(tmp_path, monkeypatch, failing) -> None:
    """``commit`` used to fsync outside its cleanup: a failing fsync left the temp file behind."""
    f = AtomicFile(str(tmp_path / "x.json"))
    f.file.write(b"data")

    def boom(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(OSError, match="No space"):
        f.commit()
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == [] and f.file.closed


def test_parquet_readers_name_the_file_they_cannot_read(tmp_path) -> None:
    """pyarrow's error names ``'<Buffer>'``; ours names the file, on one line."""
    store = Store(str(tmp_path))
    store.write_parquet("manifest/part-a.parquet", pa.table({"a": [1, 2, 3]}))
    path = tmp_path / "manifest" / "part-a.parquet"
    path.write_bytes(path.read_bytes()[:40])  # truncated: a crash or a full disk mid-copy
    for read in (lambda: store.read_parquet("manifest/part-a.parquet"), lambda: read_parquet(str(path))):
        with pytest.raises(UnreadableFileError) as e:
            read()
        assert str(path) in str(e.value) and "<Buffer>" not in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UnreadableFileError, match=r"part-a\.parquet"):
        store.check_parquet("manifest/part-a.parquet")


def test_uri_writes_are_atomic_on_remote_filesystems_too() -> None:
    uri = "memory://accord-storage-test/out/x.json"
    write_json_atomic(uri, {"a": 1})
    assert read_bytes(uri).replace(b" ", b"").replace(b"\n", b"") == b'{"a":1}'

    with pytest.raises(TypeError):
        atomic_write_bytes(uri, "not bytes")  # type: ignore[arg-type]
    assert read_bytes(uri).startswith(b"{"), "a failed write keeps the old file whole"


def test_run_records_round_trip_and_a_broken_one_is_a_note(tmp_path) -> None:
    from accord.core.runs import build_record, new_run_id, read_run_records, write_run_record

    ids = []
    for kind in ("ingest", "tokenize"):
        ids.append(new_run_id())
        rec = build_record(ids[-1], kind, status="succeeded", started_at=0.0, argv=["accord"],
                           out_uri="s3://user:secret@bucket/out?sig=x")  # fmt: skip
        write_run_record(str(tmp_path), rec)
    (tmp_path / "runs" / "zz.json").write_text("{broken")
    records, problems = read_run_records(str(tmp_path))
    assert sorted(r["run_id"] for r in records) == sorted(ids) and len(problems) == 1
    assert all("secret" not in json.dumps(r) and "sig=" not in json.dumps(r) for r in records)


def test_reading_parquet_never_aborts_the_process_at_exit(tmp_path) -> None:
    """pyarrow 26's threaded Parquet reader aborted about half of the processes that used it, at
    exit and after their work ("terminate called without an active exception", exit 134): an
    ``accord manifest stats`` that printed its table still failed. Eight fresh processes that
    read a part through the store all exit 0 (with the threads, all eight passing had a <1%
    chance)."""
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"a": list(range(100)), "b": [str(i) for i in range(100)]}), tmp_path / "p.parquet"
    )
    read = f"Store({str(tmp_path)!r}).read_parquet('p.parquet')"
    code = f"from accord.core.storage import Store; assert len({read}) == 100"
    for _ in range(8):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, (proc.returncode, proc.stderr[-500:])
