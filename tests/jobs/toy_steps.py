"""Toy steps for the job runner's tests, importable by Ray workers (tests put this folder on
PYTHONPATH): a source step that splits a unit into items, a batched pool step, a post step."""

from __future__ import annotations

import os

import numpy as np

from accord.jobs.step import ItemError, Step


class Split(Step):
    """A unit ``{"source_uri", "n"}`` -> ``n`` items; ``bad`` fails the unit, ``poison`` kills the worker."""

    name = "split"

    def process(self, item):
        return list(self.iter_process(item))

    def iter_process(self, item):
        if item.get("poison"):
            os._exit(139)  # what a segfault in a native decoder looks like to Ray
        if item.get("bad"):
            raise ItemError("split", "not_audio", "no demuxer")
        for i in range(item["n"]):
            yield {"source_uri": item["source_uri"], "clip_id": f"{item['source_uri']}#{i}", "x": i}


class Square(Step):
    """Batched; item ``x == 3`` fails, and spoils any batch it is in."""

    name = "square"

    def process(self, item):
        if item["x"] == 3:
            raise ItemError("square", "too_odd", "three")
        return [{**item, "y": item["x"] ** 2, "batch": 1}]

    def process_batch(self, items):
        if any(it["x"] == 3 for it in items):
            raise RuntimeError("one bad item spoils the batch")
        return [{**it, "y": it["x"] ** 2, "batch": len(items)} for it in items]


class Tag(Step):
    """Post step; its array must not reach the driver."""

    name = "tag"

    def process(self, item):
        return [{**item, "tag": f"{item['clip_id']}={item['y']}", "audio": np.zeros(3, np.float32)}]
