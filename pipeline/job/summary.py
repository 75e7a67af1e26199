"""Console tables for the end of a run and for a dry run (rich)."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table

from accord.core.stages import STAGES
from accord.core.storage import redact_uri


def _fmt_h(h: float) -> str:
    return f"{h:.3f}" if h < 100 else f"{h:,.0f}"


def run_table(record: dict[str, Any]) -> list[Table]:
    res, counts = record["results"], record["counts"]
    head = Table(title=f"ingest {record['run_id']} — {record['status']}", show_header=False)
    head.add_row(
        "sources",
        f"{counts['sources_listed']} listed, {counts['sources_skipped_done']} already done, "
        f"{res['sources_committed']} committed, {counts['sources_incomplete']} incomplete",
    )
    head.add_row(
        "outcomes",
        f"{res.get('sources_no_speech', 0)} without speech, {res['sources_failed']} failed, "
        f"{res.get('sources_to_retry', 0)} with clips to retry",
    )
    head.add_row("hours in", _fmt_h(res["hours_in"]))
    head.add_row("clips", f"{res['clips']} ({_fmt_h(res['hours_clipped'])} h)")
    head.add_row("wall time", f"{record['timings_s'].get('total', 0):.1f} s")
    kept = Table(title="hours kept (clips) per stage and language")
    langs = sorted({lang for s in res["hours_kept"].values() for lang in s})
    kept.add_column("stage")
    for lang in langs:
        kept.add_column(lang, justify="right")
    for stage in ("all", *STAGES):
        h, c = res["hours_kept"].get(stage, {}), res["clips_kept"].get(stage, {})
        kept.add_row(stage, *[f"{_fmt_h(h.get(lang, 0.0))} ({c.get(lang, 0)})" for lang in langs])
    errs = Table(title="errors by reason")
    errs.add_column("step:error_type")
    errs.add_column("count", justify="right")
    for k, n in res["errors_by_reason"].items():
        errs.add_row(k, str(n))
    return [head, kept, errs]


def print_run(record: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console(stderr=True)
    for t in run_table(record):
        console.print(t)


def print_dry_run(plan: Any, console: Console | None = None, limit: int = 50) -> None:
    console = console or Console()
    t = Table(
        title=f"would process {len(plan.todo)} sources ({len(plan.done)} already done) under {plan.root}"
    )
    t.add_column("source")
    t.add_column("MB", justify="right")
    t.add_column("duration s", justify="right")
    t.add_column("note")
    root = plan.root.rstrip("/") + "/"
    for p in plan.todo[:limit]:
        d = "?" if math.isnan(p.duration_s) else f"{p.duration_s:.1f}"
        name = p.source.uri[len(root) :] if p.source.uri.startswith(root) else redact_uri(p.source.uri)
        t.add_row(name, f"{p.source.size / 1e6:.2f}", d, p.error)
    if len(plan.todo) > limit:
        t.add_row(f"... {len(plan.todo) - limit} more", "", "", "")
    console.print(t)
    e = plan.estimates
    est = Table(title="estimate", show_header=False)
    est.add_row("audio hours", f"{e['hours']:.3f}")
    est.add_row("clips (typical rate)", str(e["clips"]))
    for k, v in e["core_seconds_by_step"].items():
        est.add_row(f"core-seconds: {k}", f"{v:.0f}")
    est.add_row("core-hours", f"{e['core_hours']:.3f}")
    est.add_row(f"wall hours on {e['cpus']} cpus", f"{e['wall_hours_at_cpus']:.3f}")
    if e.get("sources_unreadable_header"):
        est.add_row("unreadable headers", str(e["sources_unreadable_header"]))
    console.print(est)
    if plan.listing.errors:
        console.print(f"[yellow]{len(plan.listing.errors)} list entries rejected[/yellow]")
