"""Run steps over rows with per-item error capture and per-source accounting (no Ray here).

The Ray graph moves rows of three kinds between stages, each a small dict with a pickled
payload (so Arrow never has to infer a schema for audio arrays or nested transcripts):

- ``clip``: one clip item in flight, with its *weight* (a Fraction, 1 per VAD clip);
- ``error``: an ERROR_SCHEMA row (a failed source or clip), with the weight it retires
  (1 for a source-level failure, the failed clip's weight otherwise);
- ``source``: emitted once per source after the rows above, with the total weight to expect.

A source is complete when its ``source`` row has arrived and the weights of its clip and
error rows add up to the expected count. Steps after VAD may drop an item (it becomes a
``dropped`` error row) or split it (children share the parent's weight), so the sum stays
exact whatever the steps do, and the driver can commit each source atomically.
"""

from __future__ import annotations

import pickle
import time
import traceback
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Any

from accord.pipeline.steps.base import Item, ItemError, Step

CLIP, ERROR, SOURCE = "clip", "error", "source"
TIMINGS = "_timings"  # item key: step name -> seconds spent on this item
# Item keys that never reach the manifest (large arrays, internal state).
TRANSIENT_PREFIXES = ("_",)


def pack(key: str, kind: str, payload: Any) -> dict[str, Any]:
    return {"key": key, "kind": kind, "payload": pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)}


def unpack(row: dict[str, Any]) -> Any:
    return pickle.loads(row["payload"])


def _error(uri: str, step: str, exc: BaseException, clip_id: str | None) -> dict[str, Any]:
    if isinstance(exc, ItemError):
        etype, reason, step = exc.error_type, exc.reason, exc.step or step
    elif getattr(exc, "error_type", None) and getattr(exc, "reason", None):
        etype, reason = exc.error_type, exc.reason  # e.g. audio_io.AudioError
    else:
        # An unexpected exception is still one item's failure: class name + where it happened.
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else ""
        etype, reason = type(exc).__name__, f"{exc}{where}"
    return {"input_uri": uri, "clip_id": clip_id, "step": step, "error_type": etype, "reason": str(reason)}


def _add_time(item: Item, name: str, dt: float) -> None:
    t = item.setdefault(TIMINGS, {})
    t[name] = t.get(name, 0.0) + dt


def _step_name(step: Step) -> str:
    return getattr(step, "name", None) or type(step).__name__


def process_source(steps: list[Step], source: dict[str, Any]) -> list[dict[str, Any]]:
    """All rows of :func:`iter_source` as a list (tests, and callers without streaming)."""
    return list(iter_source(steps, source))


def iter_source(steps: list[Step], source: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Run the source steps (decode, VAD...) on one source, yielding a row per clip and per
    error as each is made, then one source row with the weight to expect.

    The first step gets ``{"source_uri", "source_size", "source_fingerprint", "source_key"}``;
    each step's items go through the next one lazily (``Step.outputs``), so an hour-long
    source's clips leave the worker in blocks instead of all at once. A step failing after it
    has yielded some items keeps those and adds an error row.
    """
    key, uri = source["key"], source["uri"]
    t0 = time.perf_counter()
    item0: Item = {
        "source_uri": uri,
        "source_size": source.get("size"),
        "source_fingerprint": source.get("fingerprint"),
        "source_key": key,
    }
    timings: dict[str, float] = {}
    meta: dict[str, Any] = {}
    n = 0

    def run(item: Item, i: int) -> Iterator[dict[str, Any]]:
        if i == len(steps):
            yield pack(key, CLIP, (item, Fraction(1)))
            return
        step, name = steps[i], _step_name(steps[i])
        outputs = step.outputs(item)
        while True:
            s0 = time.perf_counter()
            try:
                out = next(outputs)
            except StopIteration:
                break
            except Exception as e:
                yield pack(key, ERROR, (_error(uri, name, e, item.get("clip_id")), Fraction(1)))
                break
            finally:
                timings[name] = timings.get(name, 0.0) + time.perf_counter() - s0
            for k in ("source_duration_s", "source_sample_rate", "source_channels", "source_sha256"):
                if k in out:  # what the source steps learnt about the file, for the run record
                    meta[k] = out[k]
            yield from run(out, i + 1)

    for row in run(item0, 0):
        n += 1  # each clip and each source-level error retires weight 1
        yield row
    summary = {
        **source,
        **meta,
        "n_expected": n,
        "timings": timings,
        "wall_s": time.perf_counter() - t0,
    }
    yield pack(key, SOURCE, summary)


def process_rows(
    step: Step, rows: Iterable[dict[str, Any]], batched: bool = True, name: str | None = None
) -> list[dict[str, Any]]:
    """Apply one post-VAD step to the clip rows of a batch; other rows pass through unchanged.

    With ``batched`` the step's ``process_batch`` runs once over all clips; if it raises, or
    does not return exactly one item per clip, each clip is retried alone so one bad clip
    cannot take its batch-mates down, and its failure is recorded against it only.
    """
    name = name or _step_name(step)
    passthrough: list[dict[str, Any]] = []
    clips: list[tuple[str, Item, Fraction]] = []
    for row in rows:
        if row["kind"] == CLIP:
            item, w = unpack(row)
            clips.append((row["key"], item, w))
        else:
            passthrough.append(row)
    out = passthrough
    if not clips:
        return out
    if batched and len(clips) > 1:
        s0 = time.perf_counter()
        try:
            results = step.process_batch([c[1] for c in clips])
        except Exception:
            results = None
        if results is not None and len(results) == len(clips):
            dt = (time.perf_counter() - s0) / len(clips)
            for (key, _, w), res in zip(clips, results, strict=True):
                _add_time(res, name, dt)
                out.append(pack(key, CLIP, (res, w)))
            return out
    for key, item, w in clips:
        s0 = time.perf_counter()
        try:
            results = step.process(item)
        except Exception as e:
            uri = item.get("source_uri", "")
            out.append(pack(key, ERROR, (_error(uri, name, e, item.get("clip_id")), w)))
            continue
        dt = time.perf_counter() - s0
        if not results:
            err = {
                "input_uri": item.get("source_uri", ""),
                "clip_id": item.get("clip_id"),
                "step": name,
                "error_type": "dropped",
                "reason": f"step {name} kept nothing of this clip",
            }
            out.append(pack(key, ERROR, (err, w)))
            continue
        for res in results:
            _add_time(res, name, dt / len(results))
            out.append(pack(key, CLIP, (res, w / len(results))))
    return out


def strip_transient(item: Item) -> Item:
    """The item without audio arrays and internal keys (what the driver needs to write rows)."""
    out = {}
    for k, v in item.items():
        if k == TIMINGS or not k.startswith(TRANSIENT_PREFIXES):
            if hasattr(v, "shape") and getattr(v, "ndim", 0) > 0:
                continue  # arrays (audio) never leave the workers
            out[k] = v
    return out


def finish_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Last worker-side stage: drop audio from clip payloads so only metadata reaches the driver."""
    out = []
    for row in rows:
        if row["kind"] == CLIP:
            item, w = unpack(row)
            row = pack(row["key"], CLIP, (strip_transient(item), w))
        out.append(row)
    return out


class SourceTracker:
    """Driver-side: gathers rows per source and says when a source is complete."""

    def __init__(self) -> None:
        self.clips: dict[str, list[Item]] = {}
        self.errors: dict[str, list[dict[str, Any]]] = {}
        self.summary: dict[str, dict[str, Any]] = {}
        self.weight: dict[str, Fraction] = {}

    def add(self, row: dict[str, Any]) -> str | None:
        """Record a row; returns its source key if that source just became complete."""
        key, kind = row["key"], row["kind"]
        payload = unpack(row)
        if kind == SOURCE:
            self.summary[key] = payload
        elif kind == CLIP:
            item, w = payload
            self.clips.setdefault(key, []).append(item)
            self.weight[key] = self.weight.get(key, Fraction(0)) + w
        elif kind == ERROR:
            err, w = payload
            self.errors.setdefault(key, []).append(err)
            self.weight[key] = self.weight.get(key, Fraction(0)) + w
        s = self.summary.get(key)
        if s is not None and self.weight.get(key, Fraction(0)) == s["n_expected"]:
            return key
        return None

    def pop(self, key: str) -> tuple[dict[str, Any], list[Item], list[dict[str, Any]]]:
        self.weight.pop(key, None)
        return self.summary.pop(key), self.clips.pop(key, []), self.errors.pop(key, [])

    def incomplete(self) -> set[str]:
        return set(self.summary) | set(self.clips) | set(self.errors)
