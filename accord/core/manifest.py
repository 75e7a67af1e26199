"""The clip manifest: an ingest output's layout, its per-source atomic writer and its readers.

The writer and the reader live side by side here (the twin of :mod:`accord.core.shards`);
ingest writes through :class:`ManifestStore` and :func:`to_row`, tokenize, the CLI and the
report read through :func:`read_manifest` and :func:`read_errors`. The row schema itself is
:data:`accord.core.clip.CLIP_SCHEMA` (errors: :data:`accord.core.errors.ERROR_SCHEMA`).

Layout under ``OUT``::

    OUT/manifest/part-<source key>.parquet   clip rows of one source (CLIP_SCHEMA)
    OUT/errors/part-<source key>.parquet     error rows of one source (ERROR_SCHEMA)
    OUT/_state/done/<source key>-<fp>.json   completion marker: the :class:`Source` (URI, size,
                                             content fingerprint, key), run id and counts
    OUT/runs/<run_id>.json                   run records (:mod:`accord.core.runs`)

A source's rows are written (temp name, then rename) before its marker, so a crash leaves
either nothing or a complete part that the next run simply rewrites: no duplicates, and a
re-run skips exactly the sources whose marker matches their current fingerprint. A source
whose bytes changed gets a new fingerprint, is processed again and its parts replaced.

Eligibility is a read-time decision: the ``eligible_<stage>`` columns written at ingest are
recomputed by :func:`read_manifest` from :mod:`accord.core.eligibility` with the thresholds in
force now (the defaults, or a config the caller passes), so changing a threshold never needs a
re-ingest. Rows come back in a deterministic order: by source URI, then start time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from accord.core.clip import CLIP_SCHEMA, ELIGIBILITY_COLUMNS, SCHEMA_VERSION, upgrade_clips
from accord.core.eligibility import load_thresholds
from accord.core.errors import ERROR_SCHEMA, UnreadableFileError, error_table, retriable
from accord.core.runs import RUNS_DIR
from accord.core.stages import STAGES, stage_index
from accord.core.storage import Store

log = logging.getLogger(__name__)

MANIFEST_DIR = "manifest"
ERRORS_DIR = "errors"
DONE_DIR = "_state/done"

# Columns that describe a run, not the data: ignored when comparing two manifests.
VOLATILE_COLUMNS: tuple[str, ...] = ("run_id",)


# ---------------------------------------------------------------- sources: what a part is keyed by


def source_key(uri: str) -> str:
    """Stable, path-safe name for everything derived from ``uri``."""
    return hashlib.sha256(uri.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True, order=True)
class Source:
    """One input file of an ingest: what resuming needs. ``fingerprint`` is a cheap content
    fingerprint (size plus mtime, ETag or generation, from the listing alone); ``key`` a hash of
    the URI used for every output name, so no input name (``../x``, ``/etc/x``, unicode, very
    long) decides where anything is written. Listing buckets is ``accord.pipeline.sources``'."""

    uri: str  # absolute local path or a full URL (with protocol)
    size: int = 0
    fingerprint: str = ""
    key: str = field(default="", compare=False)

    @classmethod
    def make(cls, uri: str, size: int, fingerprint: str) -> Source:
        return cls(uri=uri, size=int(size), fingerprint=fingerprint, key=source_key(uri))

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self.uri, "size": self.size, "fingerprint": self.fingerprint, "key": self.key}


def part_name(key: str) -> str:
    return f"part-{key}.parquet"


def _fp_hash(fingerprint: str) -> str:
    return hashlib.sha256(fingerprint.encode("utf-8")).hexdigest()[:16]


# ---------------------------------------------------------------- rows


def _default(type_: Any) -> Any:
    if pa.types.is_floating(type_):
        return math.nan
    if pa.types.is_boolean(type_):
        return False
    if pa.types.is_list(type_):
        return []
    if pa.types.is_string(type_):
        return ""
    return None


def _coerce(value: Any, type_: Any) -> Any:
    if value is None:
        return _default(type_)
    if pa.types.is_floating(type_):
        return float(value)
    if pa.types.is_integer(type_):
        return int(value)
    if pa.types.is_boolean(type_):
        return bool(value)
    if pa.types.is_string(type_):
        return str(value)
    if pa.types.is_list(type_):
        return [_coerce(v, type_.value_type) for v in value]
    if pa.types.is_struct(type_):
        return {f.name: _coerce(value.get(f.name), f.type) for f in type_}
    return value


def to_row(item: Mapping[str, Any], run_id: str = "") -> dict[str, Any]:
    """A finished clip item -> exactly the columns of ``CLIP_SCHEMA``: audio and working fields
    dropped, absent columns filled with typed defaults (NaN, "", [], False)."""
    row = {}
    for f in CLIP_SCHEMA:
        value = run_id if f.name == "run_id" and run_id else item.get(f.name)
        row[f.name] = _coerce(value, f.type)
    return row


def clip_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=CLIP_SCHEMA)


# ---------------------------------------------------------------- the writer


class ManifestStore:
    """Reads and writes one ingest output root (local path or fsspec URL)."""

    def __init__(self, out_uri: str) -> None:
        self.store = Store(out_uri)
        self.uri = out_uri
        self._done: dict[str, str] | None = None  # source key -> fingerprint hash

    # -- completion markers -------------------------------------------------------------
    def _load_done(self) -> dict[str, str]:
        if self._done is None:
            done: dict[str, str] = {}
            for k in self.store.list(DONE_DIR, ".json"):
                name = k.rsplit("/", 1)[-1][: -len(".json")]
                key, _, fp = name.rpartition("-")
                done[key] = fp
            self._done = done
        return self._done

    def is_done(self, source: Source) -> bool:
        return self._load_done().get(source.key) == _fp_hash(source.fingerprint)

    def pending(self, sources: list[Source]) -> tuple[list[Source], list[Source]]:
        """``(to do, already done)`` in the given order. A source is done when its marker matches
        its fingerprint, its parts are whole (a truncated part is redone, not trusted for its
        marker) and its error part holds no error a re-run may clear: outputs written before such
        sources were left unmarked (a clip lost to a model failure, marked done) are retried too."""
        parts = set(self.store.list(MANIFEST_DIR, ".parquet")) | set(self.store.list(ERRORS_DIR, ".parquet"))
        marked = [s for s in sources if self.is_done(s)]
        # One footer read per part: on object stores each is a round trip, so run them concurrently.
        with ThreadPoolExecutor(max_workers=16) as pool:
            checks = pool.map(lambda s: self._whole(s, parts), marked)
            whole = {s.key: ok for s, ok in zip(marked, checks, strict=True)}
        todo, done = [], []
        for s in sources:
            (done if whole.get(s.key, False) else todo).append(s)
        return todo, done

    def _whole(self, source: Source, parts: set[str]) -> bool:
        """Whether a marked source's parts read back and hold no error a re-run may clear."""
        clips, errors = f"{MANIFEST_DIR}/{part_name(source.key)}", f"{ERRORS_DIR}/{part_name(source.key)}"
        try:
            if clips in parts:
                self.store.check_parquet(clips)
            if errors in parts:
                table = self.store.read_parquet(errors)
                return not any(retriable(e) for e in table.select(["error_type"]).to_pylist())
        except UnreadableFileError as e:
            log.warning("%s; redoing its source %s", e, source.uri)
            return False
        return True

    # -- commit -------------------------------------------------------------------------
    def commit(
        self,
        source: Source,
        clip_rows: list[dict[str, Any]],
        error_rows: list[dict[str, Any]],
        run_id: str,
        extra: dict[str, Any] | None = None,
        mark_done: bool = True,
    ) -> None:
        """Atomically replace this source's parts, then write its completion marker."""
        part = part_name(source.key)
        if clip_rows:
            rows = sorted(
                clip_rows, key=lambda r: (r["start_s"] or 0.0, r["end_s"] or 0.0, r["clip_id"] or "")
            )
            self.store.write_parquet(f"{MANIFEST_DIR}/{part}", clip_table(rows))
        else:
            self.store.remove(f"{MANIFEST_DIR}/{part}")
        if error_rows:
            self.store.write_parquet(f"{ERRORS_DIR}/{part}", error_table(error_rows))
        else:
            self.store.remove(f"{ERRORS_DIR}/{part}")
        if not mark_done:
            return
        done = self._load_done()
        old = done.get(source.key)
        fp = _fp_hash(source.fingerprint)
        marker = {
            **source.to_dict(),
            "run_id": run_id,
            "n_clips": len(clip_rows),
            "n_errors": len(error_rows),
            "committed_at": time.time(),
            **(extra or {}),
        }
        self.store.write_bytes(f"{DONE_DIR}/{source.key}-{fp}.json", json.dumps(marker).encode())
        if old is not None and old != fp:
            self.store.remove(f"{DONE_DIR}/{source.key}-{old}.json")
        done[source.key] = fp

    def clean_temp(self) -> int:
        """Sweep the temp files dead runs left behind (:meth:`accord.core.storage.Store.clean_temp`:
        a live run's files in progress are kept); they are invisible to readers anyway."""
        return self.store.clean_temp(MANIFEST_DIR, ERRORS_DIR, DONE_DIR, RUNS_DIR)


# ---------------------------------------------------------------- the readers


class SchemaVersionError(ValueError):
    """A manifest file written by a newer accord than this one."""


def read_part(store: Store, key: str, schema: pa.Schema) -> pa.Table:
    """One Parquet part of ``schema``'s layout (clips are lifted from older versions); a part
    written by a newer accord is refused. Columns may be missing: see :func:`conform`."""
    try:
        t = store.read_parquet(key)
    except UnreadableFileError as e:
        raise UnreadableFileError(f"{e}; re-running the ingest over this output rewrites it") from e
    meta = t.schema.metadata or {}
    version = int(meta.get(b"accord.schema_version", b"0") or 0)
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{key} has schema version {version}; this accord reads <= {SCHEMA_VERSION}: upgrade accord"
        )
    if schema is CLIP_SCHEMA and version < SCHEMA_VERSION:
        return upgrade_clips(t)
    return t.select([f.name for f in schema if f.name in t.column_names])


def _read_parts(store: Store, prefix: str, schema: pa.Schema) -> pa.Table:
    keys = store.list(prefix, ".parquet")
    # One part per source: on object stores each read is a round trip, so read them concurrently.
    with ThreadPoolExecutor(max_workers=16) as pool:
        tables = list(pool.map(lambda k: read_part(store, k, schema), keys))
    if not tables:
        return schema.empty_table()
    return conform(pa.concat_tables(tables, promote_options="default"), schema)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` in ``schema``'s column order and types; columns an older version lacked are null."""
    for f in schema:
        if f.name not in table.column_names:
            table = table.append_column(f, pa.nulls(len(table), f.type))
    return table.select(schema.names).cast(schema)


def _sort(t: pa.Table, keys: list[tuple[str, str]]) -> pa.Table:
    return t.take(pc.sort_indices(t, sort_keys=keys)) if len(t) else t


def _built(thresholds: Any) -> bool:
    from accord.core.eligibility import StageThresholds

    return isinstance(thresholds, dict) and all(isinstance(v, StageThresholds) for v in thresholds.values())


def reapply_eligibility(table: pa.Table, thresholds: Any = None) -> pa.Table:
    """Recompute the ``eligible_<stage>`` columns of ``table`` under ``thresholds``: ``None`` (the
    defaults), a YAML path or mapping (:func:`accord.core.eligibility.load_thresholds`), or
    thresholds already built."""
    from accord.core import eligibility

    if not _built(thresholds):
        thresholds = load_thresholds(thresholds)
    if not len(table):
        return table
    cols: dict[str, list[bool]] = {c: [] for c in ELIGIBILITY_COLUMNS}
    for row in table.drop_columns(list(ELIGIBILITY_COLUMNS)).to_pylist():
        flags = eligibility.eligible(row, thresholds)
        for s in STAGES:
            cols[f"eligible_{s}"].append(bool(flags.get(s, False)))
    for c in ELIGIBILITY_COLUMNS:
        table = table.set_column(table.schema.get_field_index(c), c, pa.array(cols[c], pa.bool_()))
    return table


def read_manifest(
    out_uri: str,
    stage: str | None = None,
    lang: str | None = None,
    thresholds: Any = None,
    reapply: bool = True,
) -> pa.Table:
    """All clip rows (CLIP_SCHEMA), eligibility re-applied, optionally only ``stage``/``lang``.

    ``thresholds``: ``None`` for the defaults of ``accord.core.eligibility``, a YAML path
    or mapping (see :func:`accord.core.eligibility.load_thresholds`), or an already-built thresholds object.
    """
    store = Store(out_uri)
    t = _read_parts(store, MANIFEST_DIR, CLIP_SCHEMA)
    if reapply:
        t = reapply_eligibility(t, thresholds)
    if stage is not None:
        stage_index(stage)  # clear error for an unknown name
        t = t.filter(pc.field(f"eligible_{stage}"))
    if lang:
        t = t.filter(pc.field("language") == lang)
    return _sort(t, [("source_uri", "ascending"), ("start_s", "ascending"), ("clip_id", "ascending")])


def read_errors(out_uri: str) -> pa.Table:
    t = _read_parts(Store(out_uri), ERRORS_DIR, ERROR_SCHEMA)
    return _sort(t, [("input_uri", "ascending"), ("step", "ascending"), ("clip_id", "ascending")])


def write_filtered(table: pa.Table, dest: str) -> str:
    """Write ``table`` as one Parquet file (``dest`` ends in .parquet) or a part in a dataset dir."""
    from accord.core.storage import open_fs

    fs, path = open_fs(dest)
    if not path.endswith(".parquet"):
        fs.makedirs(path, exist_ok=True)
        path = f"{path.rstrip('/')}/part-0.parquet"
    tmp = f"{path}.tmp"
    with fs.open(tmp, "wb") as f:
        pq.write_table(table, f, compression="zstd")
    fs.mv(tmp, path)
    return path
