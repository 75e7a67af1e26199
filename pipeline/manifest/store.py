"""The on-storage layout of an ingest output and its per-source atomic commit.

::

    OUT/manifest/part-<source key>.parquet   clip rows of one source (CLIP_SCHEMA)
    OUT/errors/part-<source key>.parquet     error rows of one source (ERROR_SCHEMA)
    OUT/_state/done/<source key>-<fp>.json   completion marker: source URI + content fingerprint
    OUT/runs/<run_id>.json                   run records

A source's rows are written (temp name, then rename) before its marker, so a crash leaves
either nothing or a complete part that the next run simply rewrites: no duplicates, and a
re-run skips exactly the sources whose marker matches their current fingerprint. A source
whose bytes changed gets a new fingerprint, is processed again and its parts replaced.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from accord.core.errors import error_table, retriable
from accord.core.runs import RUNS_DIR
from accord.core.storage import Store
from accord.pipeline.io.listing import Source
from accord.pipeline.manifest.rows import clip_table

MANIFEST_DIR = "manifest"
ERRORS_DIR = "errors"
DONE_DIR = "_state/done"


def _fp_hash(fingerprint: str) -> str:
    return hashlib.sha256(fingerprint.encode("utf-8")).hexdigest()[:16]


def part_name(key: str) -> str:
    return f"part-{key}.parquet"


class ManifestStore:
    """Reads and writes one ingest output root (local path or fsspec URL)."""

    def __init__(self, out_uri: str) -> None:
        self.store = Store(out_uri)
        self.uri = out_uri
        self._done: dict[str, str] | None = None  # source key -> fingerprint hash

    # -- completion markers -------------------------------------------------------------
    def _load_done(self) -> dict[str, str]:
        if self._done is None:
            done: dict[str, str] = {}
            for k in self.store.list(DONE_DIR, ".json"):
                name = k.rsplit("/", 1)[-1][: -len(".json")]
                key, _, fp = name.rpartition("-")
                done[key] = fp
            self._done = done
        return self._done

    def is_done(self, source: Source) -> bool:
        return self._load_done().get(source.key) == _fp_hash(source.fingerprint)

    def pending(self, sources: list[Source]) -> tuple[list[Source], list[Source]]:
        """``(to do, already done)`` in the given order. A source is done when its marker matches
        its fingerprint and its error part holds no error a re-run may clear: outputs written
        before such sources were left unmarked (a clip lost to a model failure, marked done)
        are retried too."""
        with_errors = set(self.store.list(ERRORS_DIR, ".parquet"))
        todo, done = [], []
        for s in sources:
            ok = self.is_done(s) and not (
                f"{ERRORS_DIR}/{part_name(s.key)}" in with_errors and self._retriable_errors(s)
            )
            (done if ok else todo).append(s)
        return todo, done

    def _retriable_errors(self, source: Source) -> bool:
        table = self.store.read_parquet(f"{ERRORS_DIR}/{part_name(source.key)}")
        return any(retriable(e) for e in table.select(["error_type"]).to_pylist())

    # -- commit -------------------------------------------------------------------------
    def commit(
        self,
        source: Source,
        clip_rows: list[dict[str, Any]],
        error_rows: list[dict[str, Any]],
        run_id: str,
        extra: dict[str, Any] | None = None,
        mark_done: bool = True,
    ) -> None:
        """Atomically replace this source's parts, then write its completion marker."""
        part = part_name(source.key)
        if clip_rows:
            rows = sorted(
                clip_rows, key=lambda r: (r["start_s"] or 0.0, r["end_s"] or 0.0, r["clip_id"] or "")
            )
            self.store.write_parquet(f"{MANIFEST_DIR}/{part}", clip_table(rows))
        else:
            self.store.remove(f"{MANIFEST_DIR}/{part}")
        if error_rows:
            self.store.write_parquet(f"{ERRORS_DIR}/{part}", error_table(error_rows))
        else:
            self.store.remove(f"{ERRORS_DIR}/{part}")
        if not mark_done:
            return
        done = self._load_done()
        old = done.get(source.key)
        fp = _fp_hash(source.fingerprint)
        marker = {
            **source.to_dict(),
            "run_id": run_id,
            "n_clips": len(clip_rows),
            "n_errors": len(error_rows),
            "committed_at": time.time(),
            **(extra or {}),
        }
        self.store.write_bytes(f"{DONE_DIR}/{source.key}-{fp}.json", json.dumps(marker).encode())
        if old is not None and old != fp:
            self.store.remove(f"{DONE_DIR}/{source.key}-{old}.json")
        done[source.key] = fp

    def clean_temp(self) -> int:
        """Drop temp files a killed run left behind (they are invisible to readers anyway)."""
        return sum(self.store.clean_temp(d) for d in (MANIFEST_DIR, ERRORS_DIR, DONE_DIR, RUNS_DIR))
