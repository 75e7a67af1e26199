"""The row protocol between a job's stages, and the steps' runners over it (no Ray here).

A job's graph moves rows of three kinds, each a small dict with a pickled payload (so Arrow
never has to infer a schema for audio arrays or nested transcripts):

- ``item``: a bundle of items in flight, each with its *weight* (a Fraction, 1 per item the
  source steps made); the bundle is what one batched step call sees, so batch composition
  never depends on how the executor cut the stream;
- ``error``: an ``ERROR_SCHEMA`` row (a failed unit or item), with the weight it retires
  (1 for a failure in the source steps, the failed item's weight otherwise);
- ``unit``: emitted once per unit after the rows above, with the total weight to expect.

A unit (an ingest source, a tokenize shard) is complete when its ``unit`` row has arrived and
the weights of its item and error rows add up to the expected count. Steps after the source
steps may drop an item (it becomes a ``dropped`` error row) or split it (children share the
parent's weight), so the sum stays exact whatever the steps do, and the driver can commit each
unit atomically.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from accord.core.errors import error_from_exception, error_row
from accord.jobs.contract import missing_error, missing_writes
from accord.jobs.step import Item, Step

ITEM, ERROR, UNIT = "item", "error", "unit"
TIMINGS = "_timings"  # item key: step name -> seconds spent on this item
# Item keys that never reach the driver (internal state); arrays are dropped too.
TRANSIENT_PREFIXES = ("_",)

Row = dict[str, Any]
Weighted = tuple[Item, Fraction]


@dataclass(frozen=True)
class Unit:
    """What a job commits atomically: its key (marker, part names) and the first step's item."""

    key: str
    item: Item


def pack(key: str, kind: str, payload: Any) -> Row:
    return {"key": key, "kind": kind, "payload": pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)}


def unpack(row: Row) -> Any:
    return pickle.loads(row["payload"])


def step_name(step: Step) -> str:
    return getattr(step, "name", None) or type(step).__name__


def _add_time(item: Item, name: str, dt: float) -> None:
    t = item.setdefault(TIMINGS, {})
    t[name] = t.get(name, 0.0) + dt


def _failure(item: Item, name: str, exc: BaseException, fallback_uri: str | None = None) -> Item:
    return error_from_exception(item.get("source_uri") or fallback_uri, name, exc, item.get("clip_id"))


def iter_unit(
    steps: list[Step], unit: Unit, bundle: int = 1, summary_keys: tuple[str, ...] = ()
) -> Iterator[Row]:
    """Run the source steps on one unit, yielding item rows (``bundle`` items each) and error
    rows as they are made, then one unit row with the weight to expect.

    Each step's items go through the next one lazily (``Step.outputs``), so an hour-long
    source's clips leave the worker in blocks instead of all at once. A step failing after it
    has yielded some items keeps those and adds an error row. ``summary_keys``: item keys whose
    last value the unit row carries (what the source steps learnt about the unit).
    """
    key, uri = unit.key, unit.item.get("source_uri")
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    meta: dict[str, Any] = {}
    pending: list[Weighted] = []
    n = 0

    def run(item: Item, i: int) -> Iterator[Row]:
        if i == len(steps):
            pending.append((item, Fraction(1)))
            if len(pending) >= bundle:
                yield pack(key, ITEM, pending[:])
                pending.clear()
            return
        step = steps[i]
        name = step_name(step)
        outputs = step.outputs(item)
        while True:
            s0 = time.perf_counter()
            try:
                out = next(outputs)
            except StopIteration:
                break
            except Exception as e:
                yield pack(key, ERROR, (_failure(item, name, e, uri), Fraction(1)))
                break
            finally:
                timings[name] = timings.get(name, 0.0) + time.perf_counter() - s0
            missing = missing_writes(step, out)
            if missing:  # a column the step declared and did not write: its bug, this item's error
                yield pack(key, ERROR, (_failure(out, name, missing_error(name, missing), uri), Fraction(1)))
                continue
            for k in summary_keys:
                if k in out:
                    meta[k] = out[k]
            yield from run(out, i + 1)

    for row in run(dict(unit.item), 0):
        n += 1 if row["kind"] == ERROR else len(unpack(row))
        yield row
    if pending:
        n += len(pending)
        yield pack(key, ITEM, pending[:])
    summary = {"key": key, **meta, "n_expected": n, "timings": timings, "wall_s": time.perf_counter() - t0}
    yield pack(key, UNIT, summary)


def process_rows(step: Step, rows: Iterable[Row], batched: bool = True, name: str | None = None) -> list[Row]:
    """Apply one step to the items of ``rows``; error and unit rows pass through unchanged.

    With ``batched`` the step's ``process_batch`` runs once over every item of the rows; if it
    raises, or does not return exactly one result per item, each item is retried alone so one
    bad item cannot take its batch-mates down, and its failure is recorded against it only. A
    result that is an exception is that item's failure, a list is the items it was split into.
    An output that lacks a column the step declares it ``writes`` fails its input item
    (``missing_output``). Each input row's items stay one row.
    """
    name = name or step_name(step)
    out: list[Row] = []
    bundles: list[tuple[str, list[Weighted]]] = []
    for row in rows:
        if row["kind"] == ITEM:
            bundles.append((row["key"], unpack(row)))
        else:
            out.append(row)
    flat = [iw for _, b in bundles for iw in b]
    if not flat:
        return out
    results: list[Any] | None = None
    if batched and len(flat) > 1:
        s0 = time.perf_counter()
        try:
            results = step.process_batch([item for item, _ in flat])
        except Exception:
            results = None
        if results is not None and len(results) == len(flat):
            dt = (time.perf_counter() - s0) / len(flat)
            results = [_results(r, dt) for r in results]
        else:
            results = None
    if results is None:
        results = [_process_one(step, item) for item, _ in flat]
    it = iter(zip(flat, results, strict=True))
    for key, bundle in bundles:
        items: list[Weighted] = []
        for (item, w), res in (next(it) for _ in bundle):
            if len(res) == 1 and isinstance(res[0], BaseException):
                out.append(pack(key, ERROR, (_failure(item, name, res[0]), w)))
            elif not res:
                reason = f"step {name} kept nothing of this item"
                err = error_row(item.get("source_uri"), name, "dropped", reason, clip_id=item.get("clip_id"))
                out.append(pack(key, ERROR, (err, w)))
            elif missing := sorted(
                {k for r, _ in res if isinstance(r, dict) for k in missing_writes(step, r)}
            ):
                out.append(pack(key, ERROR, (_failure(item, name, missing_error(name, missing)), w)))
            else:
                for r, dt in res:
                    _add_time(r, name, dt)
                    items.append((r, w / len(res)))
        if items:
            out.append(pack(key, ITEM, items))
    return out


def _results(r: Any, dt: float) -> list[Any]:
    """One item's batched result as ``[(result, seconds), ...]`` or ``[exception]``: an item, its
    failure, or a list of items (a step that split it; the children share its time)."""
    if isinstance(r, BaseException):
        return [r]
    if isinstance(r, list):
        return [(x, dt / max(1, len(r))) for x in r]
    return [(r, dt)]


def _process_one(step: Step, item: Item) -> list[Any]:
    """``[(result, seconds), ...]`` of ``step.process(item)``, or ``[exception]``."""
    s0 = time.perf_counter()
    try:
        results = step.process(item)
    except Exception as e:
        return [e]
    dt = (time.perf_counter() - s0) / max(1, len(results))
    return [(r, dt) for r in results]


def strip_transient(item: Item) -> Item:
    """The item without top-level arrays and internal keys (what the driver needs)."""
    out = {}
    for k, v in item.items():
        if k == TIMINGS or not k.startswith(TRANSIENT_PREFIXES):
            if hasattr(v, "shape") and getattr(v, "ndim", 0) > 0:
                continue  # arrays (audio) never leave the workers
            out[k] = v
    return out


def finish_rows(rows: Iterable[Row]) -> list[Row]:
    """Last worker-side stage: drop arrays from item payloads so only results reach the driver."""
    out = []
    for row in rows:
        if row["kind"] == ITEM:
            row = pack(row["key"], ITEM, [(strip_transient(item), w) for item, w in unpack(row)])
        out.append(row)
    return out


class UnitTracker:
    """Driver-side: adds up each unit's weights and says when a unit is complete (holds no items)."""

    def __init__(self) -> None:
        self.summary: dict[str, dict[str, Any]] = {}
        self.weight: dict[str, Fraction] = {}

    def add(self, key: str, kind: str, weight: Fraction | None = None, summary: Any = None) -> bool:
        """Record a row's weight or summary; True when its unit just became complete."""
        if kind == UNIT:
            self.summary[key] = summary
        else:
            self.weight[key] = self.weight.get(key, Fraction(0)) + weight
        s = self.summary.get(key)
        return s is not None and self.weight.get(key, Fraction(0)) == s["n_expected"]

    def pop(self, key: str) -> dict[str, Any]:
        self.weight.pop(key, None)
        return self.summary.pop(key)
