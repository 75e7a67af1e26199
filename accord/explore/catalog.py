"""An ingest output as DuckDB tables in a private temp dir: what every explorer query reads.

The parts of ``OUT/manifest`` and ``OUT/errors`` are loaded once, at start, into a DuckDB file
in a temp dir that is removed on close. Two ways in, one result:

- **In place** (a local output, parts of the current ``SCHEMA_VERSION``, read from each part's
  Parquet footer): DuckDB's own parallel Parquet reader scans the parts in a few statements, with
  no Python in the loop: a million clips in seconds, not the minutes a part-by-part load took.
- **Through the manifest contract** (object-store URIs, parts of an older version):
  :func:`accord.core.manifest.read_part` lifts older versions and :func:`~accord.core.manifest.conform`
  conforms the columns, part by part (concurrently: one round trip per part on an object store).

A newer part than this accord reads is refused either way. Each clip row also gets the inputs
the hot queries need, computed once here instead of per query (``DERIVED``): the lowercased text
of its transcripts (the text search) and its ASR-system count (the ``asr_systems`` gates); then
each stage's eligibility under the thresholds the server starts from (``BASE_OK``), which the
what-if baseline and every stage a what-if leaves alone read as a column (:meth:`Catalog.eligible`).

One load, not one read per query: an object store sees no round trip per page, a manifest of a
hundred thousand small parts answers as fast as one of ten big ones, and DuckDB's
``memory_limit`` bounds the server's memory whatever the manifest's size (the table lives on
disk, paged in as queries need it). Measured against a view over the Parquet parts, the table
answers the text search and what-if counts several times faster (``docs/explore.md``).

The temp dir holds a copy as large as the data, so its owner's pid is written in it, and every
start sweeps the ``accord-explore-*`` dirs whose owner is dead (:func:`sweep_stale`): a
``kill -9`` leaves nothing behind for long.

Read-only by design: nothing is ever written under ``OUT``; the snapshot is what ``OUT`` held
at start (``loaded_at``), and a new ingest shows after a restart.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from accord.core.clip import CLIP_SCHEMA, SCHEMA_VERSION
from accord.core.eligibility import DEFAULT_THRESHOLDS, StageThresholds
from accord.core.errors import ERROR_SCHEMA, InputNotFound
from accord.core.manifest import ERRORS_DIR, MANIFEST_DIR, SchemaVersionError, conform, read_part
from accord.core.stages import STAGES
from accord.core.storage import Store, host_tag, pid_alive, redact_uri, unreadable
from accord.explore.gates import N_ASR_SQL, eligible_sql

log = logging.getLogger(__name__)

BATCH_ROWS = 20_000  # rows gathered from parts before one append (bounds the loader's memory)
SCAN_ROWS = 200_000  # rows per in-place scan statement: one progress line each, memory bounded
TEMP_PREFIX = "accord-explore-"
OWNER_FILE = "owner.pid"
DB_FILE = "explore.duckdb"

# Per-clip columns computed once at load (name -> SQL over the clip's columns); queries read
# them instead of the nested ``transcripts`` (clip rows shown to a person leave them out).
TEXT_SQL = "lower(array_to_string(list_transform(transcripts, lambda t: coalesce(t.text, '')), ' '))"
DERIVED: dict[str, str] = {"text_lc": TEXT_SQL, "asr_systems": N_ASR_SQL}
# and, over those, each stage's eligibility under the thresholds the server starts from: what the
# what-if compares against and most stages keep (one stage changes at a time)
BASE_OK: dict[str, str] = {s: f"base_ok_{s}" for s in STAGES}
CLIP_COLUMNS = f"* EXCLUDE ({', '.join([*DERIVED, *BASE_OK.values()])})"  # a row as the manifest holds it


class Part(NamedTuple):
    """A local part of the current version, as its Parquet footer describes it."""

    key: str
    rows: int
    columns: frozenset[str]  # its top-level columns


def owner_of(directory: Path) -> tuple[int, str] | None:
    """``(pid, host tag)`` written in an explorer temp dir, or None (none written, unreadable)."""
    try:
        pid, host = (directory / OWNER_FILE).read_text().split()
        return int(pid), host
    except (OSError, ValueError):
        return None


def db_unlocked(path: Path) -> bool:
    """Whether no process holds DuckDB's write lock on ``path`` (a dir written before pids were)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 0, 0, os.SEEK_SET)
    except OSError:
        return False
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def is_stale(directory: Path) -> bool:
    """An explorer temp dir whose server cannot be running: its pid is gone from this host, or (no
    pid in it: an older accord's) no process holds its database. A dir still being set up, or
    one of another host sharing the temp dir, is never stale."""
    owner = owner_of(directory)
    if owner is not None:
        pid, host = owner
        return host == host_tag() and pid != os.getpid() and not pid_alive(pid)
    return db_unlocked(directory / DB_FILE)


def sweep_stale(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove the ``accord-explore-*`` dirs under ``root`` (the system temp dir) that dead servers
    left (a ``kill -9`` runs no cleanup); a live server's dir is kept. The dirs removed."""
    removed = []
    for d in sorted(Path(root or tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*")):
        if d.is_dir() and not d.is_symlink() and is_stale(d):
            shutil.rmtree(d, ignore_errors=True)
            log.info("explore: removed %s, left by a server no longer running", d)
            removed.append(d)
    return removed


def make_temp(root: str | os.PathLike[str] | None = None) -> Path:
    """A private temp dir owned by this process (its pid written in it before anything else)."""
    d = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=root))
    (d / OWNER_FILE).write_text(f"{os.getpid()} {host_tag()}\n")
    return d


class Catalog:
    """The clips and errors of one ingest output, queryable with SQL from any thread.

    ``progress`` receives a line now and then while the output loads (the server prints them);
    ``temp_root`` is where the temp dir goes (the system temp dir by default); ``in_place=False``
    reads every part through :func:`read_part` (the path object stores and older parts take);
    ``thresholds``: those the page starts from (the defaults), whose eligibility is computed at load."""

    def __init__(
        self,
        out_uri: str,
        memory_limit: str = "1GB",
        threads: int = 2,
        progress: Callable[[str], None] | None = None,
        temp_root: str | os.PathLike[str] | None = None,
        in_place: bool = True,
        thresholds: Mapping[str, StageThresholds] | None = None,
    ) -> None:
        self.uri = out_uri
        self.store = Store(out_uri)
        if not (self.store.exists(MANIFEST_DIR) or self.store.exists(ERRORS_DIR)):
            raise InputNotFound(
                f"no ingest output at {redact_uri(out_uri)} (no manifest/ or errors/): pass the --out "
                "folder of an `accord ingest`"
            )
        self.progress = progress or (lambda line: None)
        self.in_place = in_place
        self.base = dict(thresholds or DEFAULT_THRESHOLDS)
        sweep_stale(temp_root)
        self.tmp = make_temp(temp_root)
        try:
            self.con = duckdb.connect(str(self.tmp / DB_FILE))
            self.con.execute(f"SET memory_limit = '{memory_limit}'")
            self.con.execute(f"SET threads = {int(threads)}")
            self.con.execute(f"SET temp_directory = '{self.tmp / 'spill'}'")
            self.con.execute("SET preserve_insertion_order = false")
            self.lock = threading.Lock()
            t0 = time.perf_counter()
            flags = {BASE_OK[s]: eligible_sql(self.base[s]) for s in STAGES}
            self.n_parts = self._load(MANIFEST_DIR, "clips", CLIP_SCHEMA, [DERIVED, flags])
            self._load(ERRORS_DIR, "errors", ERROR_SCHEMA, [])
            self.load_s = time.perf_counter() - t0
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        self.loaded_at = time.time()
        self.n_clips = self.scalar("SELECT count(*) FROM clips")
        self.n_errors = self.scalar("SELECT count(*) FROM errors")
        self.progress(
            f"explore: {self.n_clips:,} clips, {self.n_errors:,} errors from {self.n_parts:,} parts "
            f"loaded in {self.load_s:.1f} s"
        )
        log.info("explore: %d clips, %d errors in %.1f s", self.n_clips, self.n_errors, self.load_s)

    # -- loading ----------------------------------------------------------------------------
    def footers(self, keys: Sequence[str]) -> list[pq.FileMetaData]:
        """Each local part's Parquet footer (its schema version and row count; no data read)."""

        def footer(key: str) -> pq.FileMetaData:
            try:
                return pq.read_metadata(self.store.path(key))
            except (pa.ArrowException, OSError) as e:
                raise unreadable(self.store.url(key), e) from e

        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(footer, keys))

    def split(self, keys: Sequence[str]) -> tuple[list[Part], list[str]]:
        """``(parts DuckDB scans in place, keys read through read_part)``; a part newer than this
        accord is refused here, as :func:`read_part` would refuse it."""
        if not (self.store.local and self.in_place):
            return [], list(keys)
        in_place, lifted = [], []
        for key, meta in zip(keys, self.footers(keys), strict=True):
            version = int((meta.metadata or {}).get(b"accord.schema_version", b"0") or 0)
            if version > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{key} has schema version {version}; this accord reads <= {SCHEMA_VERSION}: "
                    "upgrade accord"
                )
            if version == SCHEMA_VERSION:
                top = {meta.schema.column(i).path.split(".", 1)[0] for i in range(meta.num_columns)}
                in_place.append(Part(key, meta.num_rows, frozenset(top)))
            else:
                lifted.append(key)
        return in_place, lifted

    def _load(self, prefix: str, table: str, schema: pa.Schema, layers: list[dict[str, str]]) -> int:
        """Load every part under ``prefix`` into ``table`` (``schema``'s columns plus the derived
        ``layers``, see :func:`derive`); the number of parts."""
        empty = schema.empty_table()  # noqa: F841 - read by DuckDB's replacement scan
        self.con.execute(f"CREATE TABLE {table} AS {derive('SELECT * FROM empty', layers)}")
        keys = self.store.list(prefix, ".parquet")
        in_place, lifted = self.split(keys)
        total = sum(p.rows for p in in_place)
        done = 0
        last = time.perf_counter()
        for chunk in chunks(in_place, SCAN_ROWS):
            self.scan(table, schema, chunk, layers)
            done += sum(p.rows for p in chunk)
            if time.perf_counter() - last > 1.0:
                self.progress(f"explore: {prefix}: {done:,} / {total:,} rows")
                last = time.perf_counter()
        if lifted:
            self.progress(f"explore: {prefix}: reading {len(lifted):,} parts of an older version or remote")
            self.append(table, schema, lifted, layers)
        return len(keys)

    def scan(
        self, table: str, schema: pa.Schema, parts: Sequence[Part], layers: list[dict[str, str]]
    ) -> None:
        """Append ``parts`` with DuckDB's parallel Parquet reader: ``schema``'s columns the parts
        hold (the rest NULL), cast to the table's types on insert."""
        paths = [self.store.path(p.key) for p in parts]
        have = frozenset().union(*(p.columns for p in parts))
        cols = ", ".join(f'"{f.name}"' for f in schema if f.name in have)
        src = "read_parquet(?, union_by_name = true)"
        try:
            self.con.execute(
                f"INSERT INTO {table} BY NAME {derive(f'SELECT {cols} FROM {src}', layers)}", [paths]
            )
        except duckdb.Error as e:  # name the part, as read_part would
            for p in paths:
                try:
                    pq.read_table(p)
                except (pa.ArrowException, OSError) as bad:
                    raise unreadable(p, bad) from e
            raise

    def append(self, table: str, schema: pa.Schema, keys: list[str], layers: list[dict[str, str]]) -> None:
        """Append ``keys`` read through :func:`read_part` and :func:`conform`, in batches."""
        pending: list[pa.Table] = []
        rows = 0

        def flush() -> None:
            nonlocal pending, rows
            if pending:
                batch = pa.concat_tables(pending)  # noqa: F841 - read by DuckDB's replacement scan
                self.con.execute(f"INSERT INTO {table} BY NAME {derive('SELECT * FROM batch', layers)}")
            pending, rows = [], 0

        with ThreadPoolExecutor(max_workers=8) as pool:  # object stores: one round trip per part
            for t in pool.map(lambda k: conform(read_part(self.store, k, schema), schema), keys):
                pending.append(t)
                rows += len(t)
                if rows >= BATCH_ROWS:
                    flush()
        flush()

    # -- queries ---------------------------------------------------------------------------
    def eligible(self, stage: str, t: StageThresholds) -> str:
        """SQL that is TRUE when a clip passes ``t`` at ``stage``: the column computed at load when
        ``t`` are the thresholds it was computed under, else :func:`eligible_sql`."""
        return BASE_OK[stage] if self.base.get(stage) == t else eligible_sql(t)

    def rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        """Rows of ``sql`` as dicts (a cursor per call: requests run in threads)."""
        cur = self.con.cursor()
        try:
            res = cur.execute(sql, params or [])
            names = [d[0] for d in res.description]
            return [dict(zip(names, r, strict=True)) for r in res.fetchall()]
        finally:
            cur.close()

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        cur = self.con.cursor()
        try:
            row = cur.execute(sql, params or []).fetchone()
            return row[0] if row else None
        finally:
            cur.close()

    def close(self) -> None:
        with self.lock:
            try:
                self.con.close()
            finally:
                shutil.rmtree(self.tmp, ignore_errors=True)


def derive(select: str, layers: list[dict[str, str]]) -> str:
    """``select`` with each layer's columns (name -> SQL) added over the previous ones."""
    for layer in layers:
        select = f"SELECT *{''.join(f', {sql} AS {name}' for name, sql in layer.items())} FROM ({select})"
    return select


def chunks(parts: Sequence[Part], rows: int) -> list[list[Part]]:
    """``parts`` in order, grouped so that each group holds about ``rows`` rows (at least one part)."""
    out: list[list[Part]] = []
    n = rows
    for part in parts:
        if n >= rows:
            out.append([])
            n = 0
        out[-1].append(part)
        n += part.rows
    return out
