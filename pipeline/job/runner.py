"""``run_ingest``: list, skip what is done, run the graph, commit each source atomically.

Each source is a unit of the job runner (:mod:`accord.jobs`). The driver consumes the result
rows as Ray Data streams them and commits a source (its manifest part, its error part, then
its completion marker) the moment its last clip arrives. A killed run therefore loses at most
the sources in flight; the next run skips every committed source (same URI and fingerprint)
and redoes the rest.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from accord.core.eligibility import eligible, load_thresholds
from accord.core.errors import error_row, retriable
from accord.core.lock import OutputLock
from accord.core.manifest import ManifestStore, Source, to_row
from accord.core.runs import RunStats, build_record, new_run_id, write_run_record
from accord.jobs.driver import drive
from accord.jobs.graph import iter_ray
from accord.jobs.ray_init import init_ray
from accord.jobs.rows import TIMINGS, Unit
from accord.pipeline.job.config import IngestConfig
from accord.pipeline.job.plan import Plan, build_graph, build_plan
from accord.pipeline.source_language import with_source_language
from accord.pipeline.sources.listing import check_input, list_sources

log = logging.getLogger("accord.ingest")


@dataclass
class IngestResult:
    run_id: str
    record: dict[str, Any]
    record_uri: str
    sources_todo: list[Source] = field(default_factory=list)
    sources_done: list[Source] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.record["status"] == "succeeded"


def source_unit(source: Source) -> Unit:
    """A source as the runner's unit: what the first (decode) step receives."""
    item = {
        "source_uri": source.uri,
        "source_size": source.size,
        "source_fingerprint": source.fingerprint,
        "source_key": source.key,
    }
    return Unit(source.key, item)


class ManifestSink:
    """Driver-side sink of an ingest: gathers a source's clip and error rows (metadata only:
    audio never leaves the workers) and commits them with its marker when the source completes."""

    def __init__(
        self,
        ms: ManifestStore,
        sources: list[Source],
        run_id: str,
        stats: RunStats,
        on_commit: Any = None,
        thresholds: Any = None,
    ) -> None:
        self.ms, self.run_id, self.stats, self.on_commit = ms, run_id, stats, on_commit
        self.thresholds = load_thresholds(thresholds)
        self.sources = {s.key: s for s in sources}
        self.items: dict[str, list[dict[str, Any]]] = {}
        self.errors: dict[str, list[dict[str, Any]]] = {}
        self.retry: list[Source] = []  # committed with retriable errors: no marker

    def item(self, key: str, item: dict[str, Any]) -> None:
        self.items.setdefault(key, []).append(item)

    def error(self, key: str, error: dict[str, Any]) -> None:
        self.errors.setdefault(key, []).append(error)

    def complete(self, key: str, summary: dict[str, Any]) -> None:
        source = self.sources[key]
        items, errors = self.items.pop(key, []), self.errors.pop(key, [])
        # what needs the whole source: its language (clips streamed in several blocks all count),
        # then the stage gates that read it, under the run's thresholds
        clip_rows = [to_row(it, self.run_id) for it in with_source_language(items)]
        for row in clip_rows:
            row.update({f"eligible_{s}": ok for s, ok in eligible(row, self.thresholds).items()})
        error_rows = [
            error_row(e["input_uri"] or source.uri, e["step"], e["error_type"], e["reason"], self.run_id,
                      e.get("clip_id"))
            for e in errors
        ]  # fmt: skip
        extra = {"source_duration_s": summary.get("source_duration_s")}
        # Errors a re-run may clear (a model that failed on a clip): the parts are committed, so
        # the clips that did succeed are readable now, but no marker, so the next run retries.
        retry = any(retriable(e) for e in error_rows)
        self.ms.commit(source, clip_rows, error_rows, self.run_id, extra=extra, mark_done=not retry)
        if retry:
            self.retry.append(source)
        self.stats.add_source(summary, clip_rows, error_rows)
        for it in items:
            self.stats.add_item_timings(it.get(TIMINGS) or {})
        if self.on_commit is not None:
            self.on_commit(source, len(items), len(errors))

    def incomplete(self, key: str) -> None:
        """A block failed outright: record it, write no marker, so the next run retries the source."""
        source = self.sources[key]
        self.items.pop(key, None)
        self.errors.pop(key, None)
        reason = "the worker processing this source failed; it will be retried by the next run"
        err = error_row(source.uri, "job", "incomplete", reason, self.run_id)
        self.ms.commit(source, [], [err], self.run_id, mark_done=False)
        self.stats.errors["job:incomplete"] += 1


def run_sources(
    sources: list[Source],
    ms: ManifestStore,
    plan: Plan,
    cfg: IngestConfig,
    run_id: str,
    stats: RunStats,
    on_commit: Any = None,
) -> list[Source]:
    """Run the graph over ``sources`` on the connected Ray and commit each as it completes;
    returns the sources a re-run must redo (incomplete, or committed with retriable errors)."""
    sink = ManifestSink(ms, sources, run_id, stats, on_commit, cfg.eligibility)
    import ray

    resources = ray.cluster_resources() if ray.is_initialized() else {}
    cpus = float(resources["CPU"]) if "CPU" in resources else None
    memory_mb = float(resources.get("memory", 0.0)) / 2**20 or None
    rows = iter_ray([source_unit(s) for s in sources], build_graph(plan, cfg, cpus, memory_mb))
    result = drive(rows, [s.key for s in sources], sink)
    stats.result_blocks += result.blocks
    missing = set(result.incomplete) | {s.key for s in sink.retry}
    return [s for s in sources if s.key in missing]


def run_ingest(
    raw_uri: str,
    out_uri: str,
    cfg: IngestConfig | None = None,
    list_file: str | None = None,
    argv: list[str] | None = None,
    on_commit: Any = None,
) -> IngestResult:
    """Ingest every pending source of ``raw_uri`` into ``out_uri`` and write the run record.
    One run writes an output at a time: a second refuses with
    :class:`accord.core.lock.OutputBusyError` naming the first (a dead run's lock is taken over)."""
    cfg = cfg or IngestConfig()
    plan = build_plan(cfg)  # a config mistake or a missing input is refused before the output is touched
    check_input(raw_uri, list_file)
    run_id = new_run_id()
    with OutputLock(out_uri, "ingest") as lock:
        lock.acquire(run_id)
        return _ingest(raw_uri, out_uri, run_id, cfg, plan, list_file, argv, on_commit)


def _ingest(
    raw_uri: str,
    out_uri: str,
    run_id: str,
    cfg: IngestConfig,
    plan: Plan,
    list_file: str | None,
    argv: list[str] | None,
    on_commit: Any,
) -> IngestResult:
    """:func:`run_ingest`'s work, under the output's lock (so the sweep never meets a live run's files)."""
    t_start = time.time()
    timings: dict[str, float] = {}
    ms = ManifestStore(out_uri)
    ms.clean_temp()

    t0 = time.perf_counter()
    listing = list_sources(raw_uri, cfg.extensions, list_file)
    todo, done = ms.pending(listing.sources)
    timings["list"] = time.perf_counter() - t0
    log.info("%d sources listed, %d already done, %d to process", len(listing.sources), len(done), len(todo))
    for err in listing.errors:  # bad list entries: recorded per entry, never marked done
        bad = Source.make(err["input_uri"], 0, "")
        ms.commit(bad, [], [{**err, "run_id": run_id}], run_id, mark_done=False)

    stats = RunStats()
    for err in listing.errors:
        stats.errors[f"{err['step']}:{err['error_type']}"] += 1

    def write_record(status: str, incomplete: list[Source]) -> tuple[dict[str, Any], str]:
        counts = {
            "sources_listed": len(listing.sources),
            "sources_skipped_done": len(done),
            "sources_to_process": len(todo),
            "sources_incomplete": len(incomplete),
            "list_errors": len(listing.errors),
        }
        record = build_record(
            run_id,
            "ingest",
            status=status,
            started_at=t_start,
            argv=argv if argv is not None else sys.argv,
            raw_uri=raw_uri,
            out_uri=out_uri,
            config=cfg.to_dict(),
            plan=plan.describe(),
            counts=counts,
            timings_s={k: round(v, 3) for k, v in timings.items()},
            results=stats.to_dict(),
        )
        return record, write_run_record(out_uri, record)

    incomplete: list[Source] = []
    if todo:
        t0 = time.perf_counter()
        started = init_ray(num_cpus=cfg.num_cpus)
        timings["ray_init"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        try:
            incomplete = run_sources(todo, ms, plan, cfg, run_id, stats, on_commit)
        except BaseException:
            timings["process"] = time.perf_counter() - t0
            write_record("failed", incomplete)  # what was committed so far stays committed
            raise
        finally:
            timings.setdefault("process", time.perf_counter() - t0)
            if started:
                import ray

                ray.shutdown()
    timings["total"] = time.time() - t_start
    record, uri = write_record("incomplete" if incomplete else "succeeded", incomplete)
    return IngestResult(run_id, record, uri, todo, done)
