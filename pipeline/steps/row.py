"""``to_row``: a finished clip item -> exactly the columns of :data:`accord.core.clip.CLIP_SCHEMA`."""

from __future__ import annotations

import math
from typing import Any

from accord.core.clip import CLIP_SCHEMA
from accord.jobs.step import Item


def _default(type_: Any) -> Any:
    import pyarrow as pa

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
    import pyarrow as pa

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


def to_row(item: Item, run_id: str = "") -> dict[str, Any]:
    """Drop audio and working fields; fill absent columns with typed defaults (NaN, "", [])."""
    row = {}
    for f in CLIP_SCHEMA:
        value = run_id if f.name == "run_id" and run_id else item.get(f.name)
        row[f.name] = _coerce(value, f.type)
    return row
