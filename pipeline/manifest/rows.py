"""Turn pipeline items into rows of the one clip schema (``accord.core.clip``)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from accord.core.clip import CLIP_SCHEMA

# Columns that describe a run, not the data: ignored when comparing two manifests.
VOLATILE_COLUMNS: tuple[str, ...] = ("run_id",)


def clip_row(item: dict[str, Any], run_id: str) -> dict[str, Any]:
    """A ``CLIP_SCHEMA`` row from a finished clip item (audio and working keys dropped).

    One definition: the steps' :func:`accord.pipeline.steps.row.to_row` (typed defaults for
    absent columns).
    """
    from accord.pipeline.steps.row import to_row

    return to_row(item, run_id)


def clip_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=CLIP_SCHEMA)
