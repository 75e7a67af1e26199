"""The tokenize driver's sink: streams each shard's samples and errors into its ``ShardWriter``.

A shard's writer opens on its first result and publishes (tar, parts, errors, done marker)
when the runner reports the shard complete; an incomplete shard is aborted, left without a
marker, and redone by the next run. Only the samples in flight are held: the writer streams
them into a temp tar, which no failure leaves behind (a failed publish aborts its writer; an
abort removes every open writer's temp tar even when closing one of them fails).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from accord.core.errors import error_row
from accord.core.shards import RANDOM_WEIGHTS_KEY, ShardSample, ShardWriter
from accord.jobs.rows import TIMINGS
from accord.jobs.step import Item
from accord.tokenize.steps import MODEL_SECONDS

log = logging.getLogger(__name__)


class ShardSink:
    """Driver-side sink of a tokenize run (see :func:`accord.jobs.driver.drive`).

    ``shards``: unit key (shard name) -> (shard index, its planned clip ids).
    ``random_refs``: the refs ``tokenize.json`` records as random weights; a sample whose
    workers loaded different weights stops the run (a cluster's nodes may differ).
    """

    def __init__(
        self, shards_uri: str, shards: dict[str, tuple[int, list[str]]], random_refs: list[str], run_id: str
    ) -> None:
        self.shards_uri, self.shards, self.random_refs, self.run_id = shards_uri, shards, random_refs, run_id
        self.writers: dict[str, ShardWriter] = {}
        self.n_samples = self.n_errors = 0
        self.seconds = self.model_s = 0.0
        self.step_seconds: dict[str, float] = defaultdict(float)

    def _writer(self, key: str) -> ShardWriter:
        if key not in self.writers:
            index, clip_ids = self.shards[key]
            self.writers[key] = ShardWriter(self.shards_uri, index, clip_ids, self.random_refs)
        return self.writers[key]

    def item(self, key: str, item: Item) -> None:
        self.model_s += item.get(MODEL_SECONDS, 0.0)
        for name, s in (item.get(TIMINGS) or {}).items():
            self.step_seconds[name] += s
        if "sample" not in item:
            reason = "no sample and no error"
            self.error(
                key,
                error_row(item.get("source_uri"), "tokenize", "lost", reason, clip_id=item.get("clip_id")),
            )
            return
        if item.get(RANDOM_WEIGHTS_KEY) != self.random_refs:
            raise RuntimeError(
                f"clip {item['clip_id']}: the workers' models had random weights for "
                f"{item.get(RANDOM_WEIGHTS_KEY)}, the driver's for {self.random_refs}; give every "
                "node the same model files ($ACCORD_MODELS) or explicit paths"
            )
        sample: ShardSample = item["sample"]
        self._writer(key).add(sample)
        self.n_samples += 1
        self.seconds += sample.meta["duration_s"]

    def error(self, key: str, error: dict[str, Any]) -> None:
        if not error.get("clip_id"):
            raise RuntimeError(f"{key}: a failure of the whole shard: {error}")
        self._writer(key).add_error(error["clip_id"], {**error, "run_id": self.run_id})
        self.n_errors += 1

    def complete(self, key: str, summary: dict[str, Any]) -> None:
        for name, s in summary.get("timings", {}).items():
            self.step_seconds[name] += s
        w = self._writer(key)
        del self.writers[key]
        w.close()  # a failed close aborts the writer itself

    def incomplete(self, key: str) -> None:
        w = self.writers.pop(key, None)
        if w is not None:
            w.abort()

    def abort(self) -> None:
        """Drop every shard still open (the run failed); none of them gets a marker. Every
        writer is aborted even if one fails, and a failure here is logged, not raised: the
        run's own error is the one to report."""
        for key in list(self.writers):
            try:
                self.incomplete(key)
            except Exception as e:
                log.warning("%s: dropping its unfinished temp tar failed: %s", key, e)
