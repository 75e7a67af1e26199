"""The catalog's load: parts scanned in place by DuckDB give the rows the manifest contract's
:func:`accord.core.manifest.read_part` path gives (older versions among them), a bad part is
refused by name, and the temp dirs dead servers leave are swept while a live server's is kept."""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from accord.core.clip import CLIP_SCHEMA, SCHEMA_VERSION, TRANSCRIPT_TYPE
from accord.core.eligibility import DEFAULT_THRESHOLDS, load_thresholds
from accord.core.errors import UnreadableFileError
from accord.core.manifest import (
    ERRORS_DIR,
    MANIFEST_DIR,
    SchemaVersionError,
    conform,
    read_manifest,
    read_part,
)
from accord.core.stages import STAGES
from accord.core.storage import Store, host_tag
from accord.explore.catalog import (
    BASE_OK,
    CLIP_COLUMNS,
    DB_FILE,
    OWNER_FILE,
    TEMP_PREFIX,
    Catalog,
    is_stale,
    make_temp,
    sweep_stale,
)
from accord.explore.query import View, page, whatif

ROOT = Path(__file__).resolve().parents[2]
V1_TRANSCRIPT = pa.struct([(k, pa.string()) for k in ("system", "model", "text", "normalized", "language")])
V2_TRANSCRIPT = pa.struct(list(TRANSCRIPT_TYPE)[:12])  # without text_language, text_language_prob
V3_ONLY = ("language_scores", "language_check", "source_language", "asr_failures")


def downgrade(path: Path, version: int) -> None:
    """Rewrite a current part as an older accord wrote it: version 2 lacks the version-3 columns
    and transcript fields; version 1 also lacks ``n_asr`` and the quality signals."""
    t = pq.read_table(path)
    drop = [
        *V3_ONLY,
        *(("n_asr", "hallucinated", "dnsmos_ovrl", "speaker_consistency") if version == 1 else ()),
    ]
    t = t.drop_columns([c for c in drop if c in t.column_names])
    kind = V1_TRANSCRIPT if version == 1 else V2_TRANSCRIPT
    rows = [
        None if ts is None else [{k: x[k] for k in kind.names} for x in ts]
        for ts in t["transcripts"].to_pylist()
    ]
    t = t.set_column(t.schema.get_field_index("transcripts"), "transcripts", pa.array(rows, pa.list_(kind)))
    meta = {**(t.schema.metadata or {}), b"accord.schema_version": str(version).encode()}
    pq.write_table(t.replace_schema_metadata(meta), path)


@pytest.fixture(scope="module")
def mixed_out(explore_out, tmp_path_factory) -> Path:
    """The sample output with two parts of version 1 and two of version 2 among current ones."""
    out = tmp_path_factory.mktemp("mixed") / "ingest"
    shutil.copytree(explore_out.path, out)
    parts = sorted((out / MANIFEST_DIR).glob("*.parquet"))
    for path, version in zip(parts[:4], (1, 2, 1, 2), strict=True):
        downgrade(path, version)
    return out


def same(v: Any) -> Any:
    """A value comparable with ``==`` (NaN equal to NaN), recursively."""
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    if isinstance(v, dict):
        return {k: same(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [same(x) for x in v]
    return v


def clip_rows(cat: Catalog) -> list[Any]:
    return same(cat.rows(f"SELECT {CLIP_COLUMNS}, text_lc, asr_systems FROM clips ORDER BY clip_id"))


def test_in_place_scan_gives_the_read_part_rows(mixed_out, tmp_path) -> None:
    store = Store(str(mixed_out))
    keys = store.list(MANIFEST_DIR, ".parquet")
    fast = Catalog(str(mixed_out), temp_root=tmp_path)
    slow = Catalog(str(mixed_out), temp_root=tmp_path, in_place=False)
    try:
        in_place, lifted = fast.split(keys)
        assert len(lifted) == 4 and len(in_place) == len(keys) - 4 > 0
        got = clip_rows(fast)
        assert got == clip_rows(slow)
        # ... which are the manifest contract's rows, plus the columns the queries read
        want = pa.concat_tables([conform(read_part(store, k, CLIP_SCHEMA), CLIP_SCHEMA) for k in keys])
        want = sorted(want.to_pylist(), key=lambda r: r["clip_id"])
        assert [{k: r[k] for k in CLIP_SCHEMA.names} for r in got] == same(want)
        v1 = [r for r in got if r["n_asr"] is None]
        assert v1 and all(r["asr_systems"] == len(r["transcripts"]) for r in v1)
        assert all(r["text_lc"] == " ".join(t["text"] for t in r["transcripts"]).lower() for r in got)
        assert fast.n_errors == slow.n_errors > 0
        word = got[0]["transcripts"][0]["text"].split()[0].lower()
        v = View(text=word, size=500)
        assert (
            page(fast, v, DEFAULT_THRESHOLDS, DEFAULT_THRESHOLDS)["total"]
            == sum(word in r["text_lc"] for r in got)
            > 0
        )
    finally:
        fast.close()
        slow.close()


def test_a_newer_part_is_refused_and_nothing_is_left(mixed_out, tmp_path) -> None:
    out = tmp_path / "out"
    shutil.copytree(mixed_out, out)
    path = sorted((out / MANIFEST_DIR).glob("*.parquet"))[-1]
    t = pq.read_table(path)
    pq.write_table(
        t.replace_schema_metadata({b"accord.schema_version": str(SCHEMA_VERSION + 1).encode()}), path
    )
    temp = tmp_path / "tmp"
    temp.mkdir()
    for in_place in (True, False):
        with pytest.raises(SchemaVersionError, match=path.name):
            Catalog(str(out), temp_root=temp, in_place=in_place)
        assert list(temp.iterdir()) == []


@pytest.mark.parametrize("where", [MANIFEST_DIR, ERRORS_DIR])
def test_a_truncated_part_is_named(mixed_out, tmp_path, where) -> None:
    out = tmp_path / "out"
    shutil.copytree(mixed_out, out)
    path = sorted((out / where).glob("*.parquet"))[-1]
    path.write_bytes(path.read_bytes()[:-100])
    for in_place in (True, False):
        with pytest.raises(UnreadableFileError, match=path.name):
            Catalog(str(out), temp_root=tmp_path, in_place=in_place)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def owned(root: Path, pid: int, host: str | None = None) -> Path:
    d = root / f"{TEMP_PREFIX}{pid}-{host or 'here'}"
    d.mkdir()
    (d / OWNER_FILE).write_text(f"{pid} {host or host_tag()}\n")
    (d / DB_FILE).write_bytes(b"x" * 1000)
    return d


def test_sweep_removes_dead_servers_dirs_only(tmp_path) -> None:
    (tmp_path / f"{TEMP_PREFIX}legacy-live").mkdir()
    holder = subprocess.Popen(  # an older accord's live server: no pid file, its database open
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
         "c.execute('CREATE TABLE t (x INT)'); print('ok', flush=True); time.sleep(60)",
         str(tmp_path / f"{TEMP_PREFIX}legacy-live" / DB_FILE)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "ok"
        dead = owned(tmp_path, dead_pid())
        live = owned(tmp_path, holder.pid)
        mine = make_temp(tmp_path)
        foreign = owned(tmp_path, dead_pid(), host="0badcafe")
        legacy_dead = tmp_path / f"{TEMP_PREFIX}legacy-dead"
        legacy_dead.mkdir()
        duckdb.connect(str(legacy_dead / DB_FILE)).close()
        starting = tmp_path / f"{TEMP_PREFIX}starting"  # created, pid not written yet
        starting.mkdir()
        other = tmp_path / "not-ours"
        other.mkdir()
        assert is_stale(dead) and is_stale(legacy_dead)
        assert sorted(sweep_stale(tmp_path)) == sorted([dead, legacy_dead])
        left = {p.name for p in tmp_path.iterdir()}
        assert left == {
            p.name for p in (live, mine, foreign, starting, other, tmp_path / f"{TEMP_PREFIX}legacy-live")
        }
    finally:
        holder.kill()
        holder.wait()
    assert sorted(sweep_stale(tmp_path)) == sorted([tmp_path / f"{TEMP_PREFIX}legacy-live", live])


def test_a_killed_servers_dir_is_swept_at_the_next_start(explore_out, tmp_path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    cli = [sys.executable, "-m", "accord.cli.main", "manifest", "explore"]
    proc = subprocess.Popen(
        [*cli, str(explore_out.path), "--port", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        watchdog = threading.Timer(120, proc.kill)  # a server that never starts fails, not hangs
        watchdog.start()
        lines: list[str] = []
        while not any("explore: http://" in x for x in lines):
            lines.append(proc.stdout.readline())
            assert lines[-1], "".join(lines)
        watchdog.cancel()
        assert any("clips" in x and "loaded in" in x for x in lines), "".join(lines)  # progress printed
        (left,) = tmp_path.glob(f"{TEMP_PREFIX}*")
        assert not sweep_stale(tmp_path)  # the server is alive: its dir is kept
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert left.exists()  # what a kill -9 leaves...
    cat = Catalog(str(explore_out.path), temp_root=tmp_path)
    try:
        assert not left.exists()  # ... the next start removes
        assert list(tmp_path.glob(f"{TEMP_PREFIX}*")) == [cat.tmp]
    finally:
        cat.close()


def test_eligibility_computed_at_load_is_the_gates(mixed_out, tmp_path) -> None:
    """A server started from other thresholds: its columns computed at load answer for those,
    the SQL gates for any other, and both agree with the manifest's reader."""
    start = load_thresholds(
        {"anneal1": {"min_snr_db": 8, "min_dnsmos_ovrl": 2.5}, "pretrain": {"min_agreement": 0.8}}
    )
    cat = Catalog(str(mixed_out), temp_root=tmp_path, thresholds=start)
    try:
        for th in (start, DEFAULT_THRESHOLDS):
            rows = read_manifest(str(mixed_out), thresholds=th).to_pylist()
            for s in STAGES:
                assert (cat.eligible(s, th[s]) == BASE_OK[s]) == (th[s] == start[s])
                view = View(stage=s, size=500)
                got = {r["clip_id"] for r in page(cat, view, th, DEFAULT_THRESHOLDS)["rows"]}
                assert got == {r["clip_id"] for r in rows if r[f"eligible_{s}"]}, s
        assert whatif(cat, start, DEFAULT_THRESHOLDS)["anneal1"]["added"] > 0
    finally:
        cat.close()
