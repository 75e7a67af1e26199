"""``run_ingest``: list, skip what is done, run the Ray graph, commit each source atomically.

The driver consumes the result rows as Ray Data streams them and commits a source (its
manifest part, its error part, then its completion marker) the moment its last clip
arrives. A killed run therefore loses at most the sources in flight; the next run skips
every committed source (same URI and fingerprint) and redoes the rest.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from accord.pipeline.io.listing import Source, list_sources
from accord.pipeline.job.config import IngestConfig
from accord.pipeline.job.execute import TIMINGS, SourceTracker
from accord.pipeline.job.plan import Plan, build_plan
from accord.pipeline.manifest.rows import clip_row, error_row
from accord.pipeline.manifest.store import ManifestStore
from accord.pipeline.run_record import RunStats, build_record, new_run_id

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


def init_ray(cfg: IngestConfig) -> bool:
    """Connect to the cluster this process runs in (Ray Jobs sets RAY_ADDRESS) or start a local one.

    Returns True when this call started Ray (and the caller should shut it down).
    """
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
    if os.environ.get("RAY_ADDRESS"):
        ray.init(**kwargs)  # inside a Ray job or pointed at a cluster
    else:
        ray.init(num_cpus=cfg.num_cpus or os.cpu_count(), include_dashboard=False, **kwargs)
    return True


def _commit(
    ms: ManifestStore,
    source: Source,
    summary: dict[str, Any],
    items: list[dict[str, Any]],
    errors: list[dict[str, Any]],
    run_id: str,
    stats: RunStats,
) -> None:
    clip_rows = [clip_row(it, run_id) for it in items]
    error_rows = [
        error_row(
            e["input_uri"] or source.uri, e["step"], e["error_type"], e["reason"], run_id, e.get("clip_id")
        )
        for e in errors
    ]
    ms.commit(
        source, clip_rows, error_rows, run_id, extra={"source_duration_s": summary.get("source_duration_s")}
    )
    stats.add_source(summary, clip_rows, error_rows)
    for it in items:
        stats.add_item_timings(it.get(TIMINGS) or {})


def run_sources(
    sources: list[Source],
    ms: ManifestStore,
    plan: Plan,
    cfg: IngestConfig,
    run_id: str,
    stats: RunStats,
    on_commit: Any = None,
) -> list[Source]:
    """Run the graph over ``sources`` and commit each as it completes; returns incomplete sources."""
    from accord.pipeline.job.graph import build_dataset

    by_key = {s.key: s for s in sources}
    tracker = SourceTracker()
    committed: set[str] = set()
    ds = build_dataset(sources, plan, cfg)
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        stats.result_blocks += 1
        for row in batch.to_pylist():
            key = tracker.add(row)
            if key is None:
                continue
            summary, items, errors = tracker.pop(key)
            _commit(ms, by_key[key], summary, items, errors, run_id, stats)
            committed.add(key)
            if on_commit is not None:
                on_commit(by_key[key], len(items), len(errors))
    incomplete = [s for s in sources if s.key not in committed]
    for s in incomplete:
        # A block failed outright: record it, write no marker, so the next run retries the source.
        for d in (tracker.summary, tracker.clips, tracker.errors, tracker.weight):
            d.pop(s.key, None)
        reason = "the worker processing this source failed; it will be retried by the next run"
        ms.commit(s, [], [error_row(s.uri, "job", "incomplete", reason, run_id)], run_id, mark_done=False)
        stats.errors["job:incomplete"] += 1
    return incomplete


def run_ingest(
    raw_uri: str,
    out_uri: str,
    cfg: IngestConfig | None = None,
    list_file: str | None = None,
    argv: list[str] | None = None,
    on_commit: Any = None,
) -> IngestResult:
    """Ingest every pending source of ``raw_uri`` into ``out_uri`` and write the run record."""
    cfg = cfg or IngestConfig()
    plan = build_plan(cfg)
    t_start = time.time()
    timings: dict[str, float] = {}
    run_id = new_run_id()
    ms = ManifestStore(out_uri)
    ms.clean_temp()

    t0 = time.perf_counter()
    listing = list_sources(raw_uri, cfg.extensions, list_file)
    todo, done = ms.pending(listing.sources)
    timings["list"] = time.perf_counter() - t0
    log.info("%d sources listed, %d already done, %d to process", len(listing.sources), len(done), len(todo))
    for err in listing.errors:  # bad list entries: recorded per entry, never marked done
        bad = Source.make(err["input_uri"], 0, "")
        ms.commit(bad, [], [error_row(**err, run_id=run_id)], run_id, mark_done=False)

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
            raw_uri=raw_uri,
            out_uri=out_uri,
            config=cfg.to_dict(),
            plan=plan.describe(),
            counts=counts,
            timings=timings,
            stats=stats,
            started_at=t_start,
            status=status,
            argv=argv if argv is not None else sys.argv,
        )
        return record, ms.write_run(run_id, record)

    incomplete: list[Source] = []
    if todo:
        t0 = time.perf_counter()
        started = init_ray(cfg)
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
