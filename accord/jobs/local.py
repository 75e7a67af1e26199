"""The in-process executor: the same graph, steps and batching as Ray, without Ray.

Units run one after another; each stage takes ``batch_size`` rows per call like its Ray pool
(None: all of the unit's rows, which is one Ray block for any unit under the block size), so
with the bundles of ``JobGraph.bundle`` a model step sees exactly the batches it sees on Ray
and the results are identical. Used by ``tokenize --local``, tests and benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterator

from accord.jobs.graph import JobGraph
from accord.jobs.rows import Row, Unit, finish_rows, iter_unit, process_rows
from accord.jobs.step import Step


def _calls(rows: list[Row], batch_size: int | None) -> Iterator[list[Row]]:
    if batch_size is None:
        yield rows
        return
    for i in range(0, len(rows), batch_size):
        yield rows[i : i + batch_size]


def _stage(step: Step, name: str | None, rows: Iterator[Row], batch_size: int | None) -> Iterator[Row]:
    """One stage over a unit's rows, streaming when ``batch_size`` is set."""
    if batch_size is None:
        yield from process_rows(step, list(rows), batched=True, name=name)
        return
    call: list[Row] = []
    for row in rows:
        call.append(row)
        if len(call) == batch_size:
            yield from process_rows(step, call, batched=True, name=name)
            call = []
    if call:
        yield from process_rows(step, call, batched=True, name=name)


def iter_local(
    units: list[Unit], graph: JobGraph, prebuilt: dict[str, Step] | None = None
) -> Iterator[list[Row]]:
    """Result rows of ``units``, one list per pool call of the last stage (a "block").

    ``prebuilt``: steps already built and set up, by pool (or fused step) name (models the caller has loaded);
    every other step is built from its spec here, once.
    """
    prebuilt = prebuilt or {}
    source = [s.build() for s in graph.source]
    pools = [(p, [(s, prebuilt.get(s.name) or s.step.build()) for s in p.stages()]) for p in graph.pools]
    post = [s.build() for s in graph.post]
    for unit in units:
        rows: Iterator[Row] = iter_unit(source, unit, graph.bundle, graph.summary_keys)
        for pool, stages in pools:
            for stage, step in stages:  # fused steps see the pool's batches, as in its actor
                rows = _stage(step, stage.name, rows, pool.batch_size)
        for step in post:
            rows = _stage(step, None, rows, None)
        for row in rows:
            yield finish_rows([row])
