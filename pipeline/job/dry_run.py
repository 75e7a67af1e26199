"""``accord ingest --dry-run``: what would run, and roughly what it would cost, before anything runs.

Only headers are read (``audio_io.probe``: no decoding), in a small thread pool since on
object stores each probe is a round trip. Clips come from a typical clips-per-hour figure
and compute from per-step real-time factors measured on this class of machine (config
``rtfx``; ANCHORS.md): core-seconds = audio seconds / RTFx for each step, summed.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from accord.core.manifest import ManifestStore, Source
from accord.pipeline.job.config import IngestConfig
from accord.pipeline.sources.listing import ListingResult, list_sources


@dataclass
class PlannedSource:
    source: Source
    duration_s: float  # NaN when the header does not say
    error: str = ""  # "error_type: reason" when the header cannot be read


@dataclass
class DryRun:
    todo: list[PlannedSource]
    done: list[Source]
    listing: ListingResult
    estimates: dict[str, Any] = field(default_factory=dict)
    root: str = ""  # RAW_URI as listed (for display)

    def to_dict(self) -> dict[str, Any]:
        return {
            "to_process": [
                {"uri": p.source.uri, "bytes": p.source.size, "duration_s": p.duration_s, "error": p.error}
                for p in self.todo
            ],
            "skipped_done": [s.uri for s in self.done],
            "list_errors": self.listing.errors,
            "estimates": self.estimates,
        }


def _probe(source: Source) -> PlannedSource:
    from accord.core import audio_io

    try:
        info = audio_io.probe(source.uri)
        return PlannedSource(source, float(info.duration_s))
    except Exception as e:
        etype = getattr(e, "error_type", type(e).__name__)
        return PlannedSource(source, math.nan, f"{etype}: {getattr(e, 'reason', e)}")


def estimate(seconds: float, cfg: IngestConfig, cpus: int) -> dict[str, Any]:
    steps = {"decode+vad": seconds / cfg.rtfx.get("decode+vad", 64.0)}
    for system in (*cfg.asr, *cfg.signals):
        steps[system] = seconds / cfg.rtfx.get(system, 20.0)
    core_s = sum(steps.values())
    return {
        "hours": seconds / 3600,
        "clips": round(seconds / 3600 * cfg.clips_per_hour),
        "core_seconds_by_step": {k: round(v, 1) for k, v in steps.items()},
        "core_hours": core_s / 3600,
        "cpus": cpus,
        "wall_hours_at_cpus": core_s / 3600 / max(1, cpus),
    }


def dry_run(raw_uri: str, out_uri: str, cfg: IngestConfig, list_file: str | None = None) -> DryRun:
    import os

    listing = list_sources(raw_uri, cfg.extensions, list_file)
    todo, done = ManifestStore(out_uri).pending(listing.sources)
    with ThreadPoolExecutor(max_workers=8) as pool:
        planned = list(pool.map(_probe, todo))
    seconds = sum(p.duration_s for p in planned if not math.isnan(p.duration_s))
    unknown = sum(1 for p in planned if math.isnan(p.duration_s))
    est = estimate(seconds, cfg, cfg.num_cpus or os.cpu_count() or 1)
    est["sources"] = len(planned)
    est["sources_unreadable_header"] = unknown
    from accord.core.storage import is_local, open_fs, redact_uri

    fs, root = open_fs(raw_uri)
    return DryRun(
        planned, done, listing, est, root if is_local(fs) else redact_uri(fs.unstrip_protocol(root))
    )
