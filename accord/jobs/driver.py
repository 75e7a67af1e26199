"""The driver loop: consume a job's result rows, track each unit by weight, call the sink.

The rows come from either executor (Ray Data blocks or the in-process runner), as batches in
arrival order. Items and errors go to the sink as they arrive (tokenize streams them into a
shard's temp tar; ingest gathers a source's rows), and a unit is handed to ``complete`` the
moment its last weight arrives, so a killed run loses at most the units in flight. Units that
never complete (a block failed outright after its retries) go to ``incomplete``.

Whatever ends the loop, the batches are closed before ``drive`` returns or raises: on Ray that
shuts Ray Data's executor down while Ray is still up. Left to the garbage collector, it ran
after the caller's ``ray.shutdown()``, at interpreter exit, and waited for ever on the executor's
lock (a NotADirectoryError or ENOSPC in a commit left the job hanging instead of exiting).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from accord.jobs.rows import ERROR, ITEM, UNIT, Row, UnitTracker, unpack
from accord.jobs.step import Item


class Sink(Protocol):
    """Where a job's results go; every hook gets the unit's key."""

    def item(self, key: str, item: Item) -> None: ...

    def error(self, key: str, error: dict[str, Any]) -> None: ...

    def complete(self, key: str, summary: dict[str, Any]) -> None: ...

    def incomplete(self, key: str) -> None: ...


@dataclass
class DriveResult:
    completed: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    blocks: int = 0  # result batches received (a long unit spans several)


def drive(batches: Iterable[list[Row]], keys: list[str], sink: Sink) -> DriveResult:
    """Feed every row to ``sink``; returns which of ``keys`` completed and which did not.
    ``batches`` is closed on every exit, an exception from the sink included."""
    it = iter(batches)
    try:
        return _drive(it, keys, sink)
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


def _drive(batches: Iterator[list[Row]], keys: list[str], sink: Sink) -> DriveResult:
    tracker = UnitTracker()
    result = DriveResult()
    for rows in batches:
        result.blocks += 1
        for row in rows:
            key, kind = row["key"], row["kind"]
            payload = unpack(row)
            done = False
            if kind == ITEM:
                for item, w in payload:
                    sink.item(key, item)
                    done = tracker.add(key, ITEM, w)
            elif kind == ERROR:
                err, w = payload
                sink.error(key, err)
                done = tracker.add(key, ERROR, w)
            elif kind == UNIT:
                done = tracker.add(key, UNIT, summary=payload)
            if done:
                sink.complete(key, tracker.pop(key))
                result.completed.append(key)
    finished = set(result.completed)
    for key in keys:
        if key not in finished:
            sink.incomplete(key)
            result.incomplete.append(key)
    return result
