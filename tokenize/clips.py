"""The clips a tokenize run takes from a manifest: eligible for a stage, one row per clip id."""

from __future__ import annotations

import logging
from typing import Any

from accord.core.manifest import read_manifest, reapply_eligibility
from accord.core.stages import stage_index
from accord.core.storage import open_fs
from accord.jobs.step import Item

log = logging.getLogger(__name__)


def read_clips(
    manifest_uri: str, min_stage: str = "pretrain", thresholds: Any = None, reapply: bool = True
) -> list[Item]:
    """Clip rows eligible for ``min_stage``, eligibility re-applied at read time, one per clip id.

    ``manifest_uri`` is an ingest output dir (holding ``manifest/``), a dataset dir of Parquet
    files, or one Parquet file.
    """
    import pyarrow as pa
    import pyarrow.dataset as ds

    from accord.core.errors import UnreadableFileError
    from accord.core.storage import PARQUET_THREADS, redact_uri

    stage_index(min_stage)
    fs, path = open_fs(manifest_uri)
    if fs.isdir(f"{path.rstrip('/')}/manifest"):
        table = read_manifest(manifest_uri, thresholds=thresholds, reapply=reapply)
    else:
        try:
            table = ds.dataset(path, filesystem=fs, format="parquet").to_table(use_threads=PARQUET_THREADS)
        except pa.ArrowException as e:  # pyarrow names the bad file here; one error type, one line
            raise UnreadableFileError(f"{redact_uri(manifest_uri)}: {str(e).splitlines()[0]}") from e
        if reapply:
            table = reapply_eligibility(table, thresholds)
    col = f"eligible_{min_stage}"
    if col not in table.column_names:
        raise ValueError(f"{manifest_uri}: no column {col!r}; is this a clip manifest (accord.core.clip)?")
    rows = [r for r in table.to_pylist() if r[col]]
    seen: dict[str, Item] = {}
    for r in rows:
        seen.setdefault(r["clip_id"], r)
    if len(seen) < len(rows):
        log.warning("%d duplicate clip ids in the manifest: keeping the first of each", len(rows) - len(seen))
    return sorted(seen.values(), key=lambda r: r["clip_id"])
