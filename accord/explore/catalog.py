"""An ingest output as DuckDB tables in a private temp dir: what every explorer query reads.

The parts of ``OUT/manifest`` and ``OUT/errors`` are read once, part by part, through the
manifest contract's storage (:class:`accord.core.storage.Store`, any fsspec URL) and schema
(:func:`accord.core.manifest.read_part` lifts older versions), and appended to a DuckDB
database file in a temp dir that is removed on close. One read per part, not one per query:
an object store sees no round trip per page, a manifest of a hundred thousand small parts
answers as fast as one of ten big ones, and DuckDB's ``memory_limit`` bounds the server's
memory whatever the manifest's size (the table lives on disk, paged in as queries need it).

Read-only by design: nothing is ever written under ``OUT``; the snapshot is what ``OUT`` held
at start (``loaded_at``), and a new ingest shows after a restart.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from accord.core.clip import CLIP_SCHEMA
from accord.core.errors import ERROR_SCHEMA, InputNotFound
from accord.core.manifest import ERRORS_DIR, MANIFEST_DIR, conform, read_part
from accord.core.storage import Store, redact_uri

log = logging.getLogger(__name__)

BATCH_ROWS = 20_000  # rows gathered from parts before one append (bounds the loader's memory)


class Catalog:
    """The clips and errors of one ingest output, queryable with SQL from any thread."""

    def __init__(self, out_uri: str, memory_limit: str = "1GB", threads: int = 2) -> None:
        self.uri = out_uri
        self.store = Store(out_uri)
        if not (self.store.exists(MANIFEST_DIR) or self.store.exists(ERRORS_DIR)):
            raise InputNotFound(
                f"no ingest output at {redact_uri(out_uri)} (no manifest/ or errors/): pass the --out "
                "folder of an `accord ingest`"
            )
        self.tmp = Path(tempfile.mkdtemp(prefix="accord-explore-"))
        self.con = duckdb.connect(str(self.tmp / "explore.duckdb"))
        self.con.execute(f"SET memory_limit = '{memory_limit}'")
        self.con.execute(f"SET threads = {int(threads)}")
        self.con.execute(f"SET temp_directory = '{self.tmp / 'spill'}'")
        self.con.execute("SET preserve_insertion_order = false")
        self.lock = threading.Lock()
        t0 = time.perf_counter()
        self.n_parts = self._load(MANIFEST_DIR, "clips", CLIP_SCHEMA)
        self._load(ERRORS_DIR, "errors", ERROR_SCHEMA)
        self.load_s = time.perf_counter() - t0
        self.loaded_at = time.time()
        self.n_clips = self.scalar("SELECT count(*) FROM clips")
        self.n_errors = self.scalar("SELECT count(*) FROM errors")
        log.info("explore: %d clips, %d errors in %.1f s", self.n_clips, self.n_errors, self.load_s)

    def _read(self, key: str, schema: pa.Schema) -> pa.Table:
        return conform(read_part(self.store, key, schema), schema)

    def _load(self, prefix: str, table: str, schema: pa.Schema) -> int:
        """Append every part under ``prefix`` to ``table``; the number of parts."""
        empty = schema.empty_table()  # noqa: F841 - read by DuckDB's replacement scan
        self.con.execute(f"CREATE TABLE {table} AS SELECT * FROM empty")
        keys = self.store.list(prefix, ".parquet")
        pending: list[pa.Table] = []
        rows = 0

        def flush() -> None:
            nonlocal pending, rows
            if pending:
                batch = pa.concat_tables(pending)  # noqa: F841 - read by DuckDB's replacement scan
                self.con.execute(f"INSERT INTO {table} SELECT * FROM batch")
            pending, rows = [], 0

        with ThreadPoolExecutor(max_workers=8) as pool:  # object stores: one round trip per part
            for t in pool.map(lambda k: self._read(k, schema), keys):
                pending.append(t)
                rows += len(t)
                if rows >= BATCH_ROWS:
                    flush()
        flush()
        return len(keys)

    # -- queries ---------------------------------------------------------------------------
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
