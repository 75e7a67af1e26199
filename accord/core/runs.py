"""Run records: what one ingest or tokenize run did, written to ``<root>/runs/<run_id>.json``.

Every record has the run id, its kind (``ingest``/``tokenize``), status, start and finish
times, argv and software versions, plus the job's own fields (ingest: config, plan, counts,
timings and :class:`RunStats`' results: hours in and kept per stage and language, errors by
reason; tokenize: clips, shards, samples, errors). URIs are redacted (no user info or query
strings) and no environment variable is ever copied in, so a record can be shared without
leaking credentials.
"""

from __future__ import annotations

import platform
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from accord.core.stages import STAGES
from accord.core.storage import (
    TEMP_PREFIX,
    check_output_key,
    join_uri,
    list_names,
    read_json,
    redact_uri,
    write_json_atomic,
)

RUNS_DIR = "runs"  # under an ingest OUT or a tokenize SHARDS root

VERSIONED_PACKAGES = (
    "accord",
    "ray",
    "torch",
    "numpy",
    "pyarrow",
    "faster-whisper",
    "ctranslate2",
    "moonshine-voice",
    "silero-vad",
    "onnxruntime",
    "jiwer",
    "nemo-toolkit",
)


def new_run_id() -> str:
    """Sortable and unique: UTC time plus a random suffix."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@dataclass
class RunStats:
    """An ingest run's ``results`` block, accumulated on the driver as sources are committed."""

    sources_committed: int = 0
    sources_failed: int = 0  # committed with no clip and at least one error, other than no speech
    sources_no_speech: int = 0  # decoded fine, but VAD found no speech (noise, music): not failures
    sources_to_retry: int = 0  # committed with errors a re-run may clear: left without a marker
    source_seconds: float = 0.0  # decoded/probed duration of committed sources
    clips: int = 0
    clip_seconds: float = 0.0
    kept_seconds: dict[str, dict[str, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )
    kept_clips: dict[str, dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    errors: Counter = field(default_factory=Counter)
    step_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    result_blocks: int = 0  # Ray Data blocks the driver received (a long source spans several)

    def add_source(
        self, summary: dict[str, Any], clip_rows: list[dict[str, Any]], error_rows: list[dict[str, Any]]
    ):
        from accord.core.errors import no_speech_only, retriable

        self.sources_committed += 1
        if not clip_rows and no_speech_only(error_rows):
            self.sources_no_speech += 1
        elif not clip_rows and error_rows:
            self.sources_failed += 1
        if any(retriable(e) for e in error_rows):
            self.sources_to_retry += 1
        dur = summary.get("source_duration_s")
        if isinstance(dur, (int, float)) and dur == dur:
            self.source_seconds += float(dur)
        for name, s in (summary.get("timings") or {}).items():
            self.step_seconds[name] += s
        for row in clip_rows:
            d = row.get("duration_s") or 0.0
            lang = row.get("language") or "?"
            self.clips += 1
            self.clip_seconds += d
            for stage in ("all", *STAGES):
                if stage == "all" or row.get(f"eligible_{stage}"):
                    self.kept_seconds[stage][lang] += d
                    self.kept_clips[stage][lang] += 1
        for e in error_rows:
            self.errors[f"{e['step']}:{e['error_type']}"] += 1

    def add_item_timings(self, timings: dict[str, float]) -> None:
        for name, s in timings.items():
            self.step_seconds[name] += s

    def to_dict(self) -> dict[str, Any]:
        return {
            "sources_committed": self.sources_committed,
            "sources_failed": self.sources_failed,
            "sources_no_speech": self.sources_no_speech,
            "sources_to_retry": self.sources_to_retry,
            "clips": self.clips,
            "hours_in": self.source_seconds / 3600,
            "hours_clipped": self.clip_seconds / 3600,
            "hours_kept": {
                s: {lang: v / 3600 for lang, v in sorted(self.kept_seconds[s].items())}
                for s in ("all", *STAGES)
            },
            "clips_kept": {s: dict(sorted(self.kept_clips[s].items())) for s in ("all", *STAGES)},
            "errors_by_reason": dict(sorted(self.errors.items())),
            "step_seconds": {k: round(v, 3) for k, v in sorted(self.step_seconds.items())},
            "result_blocks": self.result_blocks,
        }


def build_record(
    run_id: str,
    kind: str,
    *,
    status: str,
    started_at: float,
    argv: list[str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The record of one run; ``fields`` are the job's own (values of ``*_uri`` keys redacted)."""
    extra = {k: redact_uri(v) if k.endswith("_uri") and isinstance(v, str) else v for k, v in fields.items()}
    return {
        "run_id": run_id,
        "kind": kind,
        "status": status,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_at)),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "argv": [redact_uri(a) for a in (argv or [])],
        "versions": versions(),
        **extra,
    }


def write_run_record(root: str, record: dict[str, Any]) -> str:
    """Write ``record`` atomically to ``<root>/runs/<run_id>.json``; returns its URI."""
    uri = join_uri(root, RUNS_DIR, check_output_key(f"{record['run_id']}.json"))
    write_json_atomic(uri, record)
    return uri


def read_run_records(root: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Every run record under ``<root>/runs/`` in run-id (= time) order, and a note for each file
    that cannot be read (a report still shows the others)."""
    records, problems = [], []
    for name in list_names(join_uri(root, RUNS_DIR)):
        if not name.endswith(".json") or name.startswith(TEMP_PREFIX):
            continue
        try:
            records.append(read_json(join_uri(root, RUNS_DIR, name)))
        except (OSError, ValueError) as e:
            problems.append(f"run record {name} unreadable: {e}")
    return records, problems
