"""One rank's stream of micro-batches: its shards' items, streamed, shuffled, built and packed.

:class:`MicroBatchStream` is the producer the loader runs inline or in its prefetch thread. It
holds no reference to the loader. Each :class:`Unit` it yields is one micro-batch of the stream
(``strided``: of the global stream, ``batch`` None when another rank's), with the position after
it and the loader's counters after producing it, so a consumer that has taken a unit can record
exactly that much as consumed, whatever the producer has read ahead.

Items of one shard, for one epoch: its samples in tar order (streamed through
:class:`accord.core.shards.ShardStream`), each repeated by its dataset weight (keyed on epoch
and clip), then shuffled within windows of ``shuffle_window_mb`` of sample bytes: a shard that
fits one window (every shard the tests and the demo write) is shuffled whole with the key
``(seed, "order", epoch, shard)``, as the loader always did; a larger one is cut into
consecutive windows, each shuffled with its index in the key, so the memory a rank holds is one
window, not one shard. Items are the same whichever rank reads them.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from accord.core.shards import ShardError, ShardRecord, ShardSample, ShardStream, shard_tar_uri
from accord.train.packing import Batch, Example, collate, rng_for
from accord.train.prefetch import Gauge
from accord.train.shard_split import Position, ReadPlan

log = logging.getLogger(__name__)

ExampleFn = Callable[[ShardSample, int], Example | None]
WeightsFn = Callable[[str], Mapping[str, float]]  # shard -> clip_id -> copies per epoch (selected)


@dataclass
class LoaderStats:
    """The loader's counters (``result.json`` ``loader``; ``data/*`` in metrics.jsonl)."""

    shards_read: int = 0
    corrupt_shards: int = 0
    unverified_shards: int = 0  # no done marker, or one that does not match index.parquet
    corrupt_samples: int = 0
    too_long: int = 0
    build_errors: int = 0
    samples: int = 0
    batches: int = 0
    bytes_read: int = 0  # shard bytes this rank read from storage
    skipped_shards: list[str] = field(default_factory=list)


@dataclass
class StreamConfig:
    """What the producer needs beside the plan (copied from ``LoaderConfig``)."""

    root: str
    stage: str
    max_frames: int
    seqs_per_batch: int
    seed: int
    audio_pad_id: int
    text_pad_id: int
    max_epochs: int | None
    shuffle_window_mb: float


@dataclass
class Unit:
    """One micro-batch of the stream, and the loader's state once it is consumed."""

    batch: Batch | None  # this rank's micro-batch; None: another rank's (strided)
    pos: Position  # first item not in this or an earlier micro-batch
    stats: LoaderStats


def sample_nbytes(s: ShardSample) -> int:
    """Memory a decoded sample holds (arrays, plus a flat 2 KiB for its metadata)."""
    arrays = (s.codes, s.spk, s.spkcrop, s.spkaug)
    return sum(int(a.nbytes) for a in arrays if a is not None) + 2048


# What the loader holds beyond its gauge's count (the terms of :func:`memory_bound`), measured
# with ``loader_peak_memory_*`` in bench/bench_train.py (tracemalloc, smaps, mallinfo2).
WINDOW_OVERHEAD = 1.25  # a decoded clip's metadata is ~11 KiB of Python objects, counted as 2 KiB
SHARD_WEIGHTS_KEPT = 2  # shards whose clip weights the selection holds: the one read, the next
SHARD_ROW_BYTES = 256  # per row of a kept shard: its clip_id -> weight entry (~90 B measured), decode
SELECT_PASS_BYTES = 16 * 2**20  # the start-up pass: a batch of rows as dicts, Parquet read buffers
SHARD_STATE_BYTES = 1024  # per shard of the corpus: its index.parquet row, its tally, its name
FIXED_BYTES = 64 * 2**20  # code paged in on first use (pyarrow's parquet reader), thread arenas


def memory_bound(
    window_bytes: int, queued: int, batch_bytes: int, shard_rows: int, read_block: int, n_shards: int = 1
) -> dict[str, int]:
    """The most resident memory a loader adds, by term: the shuffle window (``WINDOW_OVERHEAD``
    times its counted size), ``queued`` micro-batches of at most ``batch_bytes`` (the prefetch
    queue, one blocked in its put, one being packed, the one the trainer holds), one storage read
    block, the stage selection (``SHARD_WEIGHTS_KEPT`` shards of ``shard_rows`` rows, the largest,
    plus the start-up pass's batch), ``n_shards`` shards' per-shard state and ``FIXED_BYTES``.
    Nothing grows with the corpus's clip count."""
    terms = {
        "window": int(WINDOW_OVERHEAD * window_bytes),
        "micro_batches": queued * batch_bytes,
        "read_block": read_block,
        "selection": SHARD_WEIGHTS_KEPT * shard_rows * SHARD_ROW_BYTES + SELECT_PASS_BYTES,
        "shards": n_shards * SHARD_STATE_BYTES,
        "fixed": FIXED_BYTES,
    }
    return {**terms, "total": sum(terms.values())}


def batch_nbytes(b: Batch | None) -> int:
    if b is None:
        return 0
    ts = (b.ids_BTC, b.mask_BTK, b.doc_ids_BT, b.speaker_NS, b.speaker_pos_N2)
    return sum(t.numel() * t.element_size() for t in ts if t is not None)


class MicroBatchStream:
    """Rank ``rank``'s units from position ``pos`` on (see the module docstring)."""

    def __init__(
        self,
        cfg: StreamConfig,
        build: ExampleFn,
        weights: WeightsFn,
        record: Callable[[str], ShardRecord],
        plan: ReadPlan,
        rank: int,
        pos: Position,
        stats: LoaderStats,
        gauge: Gauge,
    ) -> None:
        self.cfg, self.build, self.weights, self.record = cfg, build, weights, record
        self.plan, self.rank, self.pos = plan, rank, pos
        self.stats = copy.deepcopy(stats)
        self.gauge = gauge

    # items ------------------------------------------------------------------------------------
    def copies(self, epoch: int, s: ShardSample, weights: Mapping[str, float]) -> int:
        w = weights.get(s.clip_id, 0.0)
        if w <= 0:
            return 0
        whole = int(w)
        return whole + int(rng_for(self.cfg.seed, "weight", epoch, s.clip_id).random() < (w - whole))

    def shard_items(self, epoch: int, name: str, start: int) -> Iterator[ShardSample]:
        """The shard's epoch-ordered items from ``start`` on (none if it is unreadable)."""
        url = shard_tar_uri(self.cfg.root, name)
        try:
            record = self.record(name)
        except ShardError as e:
            self.stats.unverified_shards += 1
            self.stats.skipped_shards.append(name)
            log.warning("skipping shard %s (epoch %d): %s", url, epoch, e)
            return
        weights = self.weights(name)  # after the marker check: an unverified shard's part is not read
        limit = int(self.cfg.shuffle_window_mb * 2**20)
        stream = ShardStream(url, record)
        window: list[ShardSample] = []
        held, index, done = 0, 0, 0  # bytes in the window, window number, items before it

        def emit(key: tuple[Any, ...]) -> Iterator[ShardSample]:
            nonlocal done
            if done + len(window) > start:
                perm = rng_for(self.cfg.seed, "order", epoch, name, *key).permutation(len(window))
                for i in perm[max(0, start - done) :]:
                    yield window[i]
            done += len(window)

        try:
            try:
                for s in stream:
                    n = self.copies(epoch, s, weights)
                    if not n:
                        continue
                    if limit and held >= limit:  # full, and another item follows: a window of many
                        yield from emit((index,))
                        self.gauge.add(-held)
                        window, held, index = [], 0, index + 1
                    window += [s] * n
                    held += sample_nbytes(s)
                    self.gauge.add(sample_nbytes(s))
                self.stats.corrupt_samples += stream.bad
                self.stats.shards_read += 1
                yield from emit((index,) if index else ())
            except ShardError as e:
                self.stats.corrupt_samples += stream.bad
                self.stats.corrupt_shards += 1
                self.stats.skipped_shards.append(name)
                log.warning("skipping shard %s (epoch %d): %s", url, epoch, e)
        finally:
            self.gauge.add(-held)
            self.stats.bytes_read += stream.bytes_read

    def items(self) -> Iterator[tuple[Position, ShardSample]]:
        """(position, item) from the start position on, across epochs."""
        epoch, k, off = self.pos
        empty_epochs = 0
        while self.cfg.max_epochs is None or epoch < self.cfg.max_epochs:
            work = self.plan.work(epoch, self.rank)
            yielded = False
            while k < len(work):
                name, start = work[k]
                for item in self.shard_items(epoch, name, start + off):
                    yielded = True
                    yield (epoch, k, off), item
                    off += 1
                k, off = k + 1, 0
            empty_epochs = 0 if yielded else empty_epochs + 1
            if empty_epochs >= 2:
                raise RuntimeError(f"no readable sample for stage {self.cfg.stage!r} in two epochs")
            epoch, k = epoch + 1, 0

    # micro-batches ----------------------------------------------------------------------------
    def packed(self) -> Iterator[tuple[list[list[Example]], Position]]:
        """Greedy packing: (rows, position of the first item not in them)."""
        cfg = self.cfg
        rows: list[list[Example]] = [[]]
        used = [0]
        for pos, sample in self.items():
            try:
                ex = self.build(sample, pos[0])
            except Exception as e:
                self.stats.build_errors += 1
                log.warning("cannot build an example from %s: %s", sample.clip_id, e)
                ex = None
            if ex is None:
                continue
            n = ex.ids_TC.shape[0]
            if n > cfg.max_frames:
                self.stats.too_long += 1
                continue
            if used[-1] + n > cfg.max_frames:
                if len(rows) == cfg.seqs_per_batch:
                    yield rows, pos
                    rows, used = [[]], [0]
                else:
                    rows.append([])
                    used.append(0)
            rows[-1].append(ex)
            used[-1] += n
            self.stats.samples += 1
        if rows[0]:
            yield rows, (cfg.max_epochs or 0, 0, 0)

    def __iter__(self) -> Iterator[Unit]:
        strided = self.plan.mode == "strided"
        for j, (rows, pos) in enumerate(self.packed()):
            mine = not strided or j % self.plan.world == self.rank
            batch = collate(rows, self.cfg.audio_pad_id, self.cfg.text_pad_id) if mine else None
            self.stats.batches += 1
            yield Unit(batch, pos, copy.deepcopy(self.stats))
