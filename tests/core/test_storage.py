"""The one storage layer: every atomic write leaves one kind of temp file, which a re-run sweeps."""

from __future__ import annotations

import json

import pytest

from accord.core.storage import AtomicFile, Store, atomic_write_bytes, read_bytes, write_json_atomic


def test_a_killed_write_leaves_a_temp_file_that_clean_temp_sweeps(tmp_path) -> None:
    store = Store(str(tmp_path))
    store.write_bytes("runs/a.json", b"{}")
    crashed = AtomicFile(str(tmp_path / "runs" / "b.json"))  # a process killed mid-write
    crashed.file.write(b"half")
    crashed.file.flush()
    assert store.list("runs") == ["runs/a.json"], "temp files are invisible to readers"
    assert store.clean_temp("runs") == 1
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["a.json"]


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
    import subprocess
    import sys

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"a": list(range(100)), "b": [str(i) for i in range(100)]}), tmp_path / "p.parquet"
    )
    read = f"Store({str(tmp_path)!r}).read_parquet('p.parquet')"
    code = f"from accord.core.storage import Store; assert len({read}) == 100"
    for _ in range(8):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, (proc.returncode, proc.stderr[-500:])
