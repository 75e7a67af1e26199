"""Read an ingest output back: clips (with stage eligibility re-applied), errors, run records.

Eligibility is a read-time decision: the ``eligible_<stage>`` columns written at ingest are
recomputed here from ``accord.core.eligibility`` with the thresholds in force now (the
defaults, or a config the caller passes), so changing a threshold never needs a re-ingest.
Rows come back in a deterministic order: by source URI, then start time.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from accord.core.clip import CLIP_SCHEMA, ELIGIBILITY_COLUMNS, SCHEMA_VERSION, upgrade_clips
from accord.core.eligibility import load_thresholds
from accord.core.errors import ERROR_SCHEMA
from accord.core.stages import STAGES, stage_index
from accord.core.storage import Store
from accord.pipeline.manifest.store import ERRORS_DIR, MANIFEST_DIR


class SchemaVersionError(ValueError):
    """A manifest file written by a newer accord than this one."""


def _read_part(store: Store, key: str, schema: pa.Schema) -> pa.Table:
    t = store.read_parquet(key)
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
        tables = list(pool.map(lambda k: _read_part(store, k, schema), keys))
    if not tables:
        return schema.empty_table()
    out = pa.concat_tables(tables, promote_options="default")
    for f in schema:  # columns an older schema version lacked
        if f.name not in out.column_names:
            out = out.append_column(f, pa.nulls(len(out), f.type))
    return out.select(schema.names).cast(schema)


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


def hours(seconds: float) -> float:
    return 0.0 if seconds is None or math.isnan(seconds) else seconds / 3600.0
