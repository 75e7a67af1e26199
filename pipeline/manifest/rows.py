"""Turn pipeline items into rows of the one clip schema (and error rows) in ``accord.schema``."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from accord.schema import CLIP_SCHEMA, ERROR_SCHEMA

# Columns that describe a run, not the data: ignored when comparing two manifests.
VOLATILE_COLUMNS: tuple[str, ...] = ("run_id",)


def clip_row(item: dict[str, Any], run_id: str) -> dict[str, Any]:
    """A ``CLIP_SCHEMA`` row from a finished clip item (audio and working keys dropped).

    One definition: the steps' :func:`accord.pipeline.steps.row.to_row` (typed defaults for
    absent columns).
    """
    from accord.pipeline.steps.row import to_row

    return to_row(item, run_id)


def error_row(
    input_uri: str,
    step: str,
    error_type: str,
    reason: str,
    run_id: str,
    clip_id: str | None = None,
) -> dict[str, Any]:
    return {
        "input_uri": input_uri,
        "clip_id": clip_id,
        "step": step,
        "error_type": error_type,
        "reason": reason[:2000],
        "run_id": run_id,
    }


def clip_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=CLIP_SCHEMA)


def error_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=ERROR_SCHEMA)
