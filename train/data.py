"""Training data: WebDataset shards -> stage-filtered, packed, per-rank micro-batches.

The stream is a pure function of ``(seed, epoch)``, the shard set and the read plan, so its
position is three integers per rank and resuming is exact:

- shards are streamed (local path or any fsspec URL), in a per-epoch permuted order, and
  each shard's samples in a per-(epoch, shard) permuted order (within shuffle windows). Only
  shards whose done marker matches their ``index.parquet`` row are read (a shard rewritten
  after the index, or never finished, is skipped, logged and counted); each is checked
  against its marker's record (``accord.core.shards.ShardRecord``: sample count and
  per-sample checksums). A shard that
  fails to read (truncated, corrupt) is skipped, logged and counted; a bad member, a changed
  byte or a sample lost to a damaged tar header skips only its sample, counted.
- which clips a stage sees comes from ``samples.parquet``: eligibility recomputed from each
  clip's stored signals with ``accord.core.eligibility.eligible_for`` under the thresholds in
  force (:func:`stage_thresholds`: the defaults, the tokenize run's overrides recorded in
  ``tokenize.json``, the recipe's ``data.eligibility``), never the flag stored in the shard;
  dataset weights repeat or subsample clips per epoch. The selection is per shard: one
  streaming pass over ``samples.parquet`` at start finds the shards to read; a shard's clip
  weights are computed from its ``parts/<shard>.parquet`` when it is opened (:class:`Selection`),
  so no rank holds a whole-corpus table or mapping. A clip id present in two shards is weighted,
  in each, by that shard's own row (a whole-corpus mapping let its last row decide for both).
- clips are packed greedily into rows of at most ``max_frames`` rows, each clip keeping its
  own ``doc_id`` so attention stays inside it; ``seqs_per_batch`` rows make a micro-batch.
- which shards a rank reads is the read mode's (``data.read_mode``, :mod:`accord.train.shard_split`):
  ``strided`` (the default) builds the same global stream on every rank and takes indices
  ``g % world == rank``, so ``world`` ranks with ``grad_accum`` A see exactly the micro-batches
  one process with ``world * A`` sees (runs comparable across world sizes) at the cost of every
  rank reading every shard; ``split`` deals each epoch's shards to ranks by bytes, so a rank
  reads ~1/world of the corpus (what a cluster needs). One rank's stream is the same in both.
  The state is the position after the last micro-batch taken, every rank's position when saved
  through :func:`gather_state`; a resume on another world size or mode re-splits from it with
  nothing repeated or skipped.
- shards stream (:class:`accord.core.shards.ShardStream`): memory is one shuffle window
  (``shuffle_window_mb``) plus the prefetch queue, whatever the shard size, plus the clip
  weights of the last two shards opened, whatever the corpus size (the stated bound:
  :func:`accord.train.stream.memory_bound`); with ``prefetch``
  the reading, decoding and packing run in a background thread (:mod:`accord.train.prefetch`).
"""

from __future__ import annotations

import copy
import functools
import logging
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from accord.core.eligibility import StageThresholds, eligible_for, load_thresholds
from accord.core.errors import ConfigError, UnreadableFileError
from accord.core.shards import (
    CHECKSUM_KEY,
    PARTS_DIR,
    READ_BLOCK_BYTES,
    SAMPLES_PARQUET,
    ShardError,
    ShardRecord,
    read_index,
    read_record,
    read_tokenize_json,
    shards_file,
    upgrade_samples,
)
from accord.core.stages import stage_index
from accord.core.storage import join_uri, unreadable
from accord.core.vocab import AUDIO_PAD_ID, PAD_ID
from accord.train.packing import Batch, Example, collate, rng_for
from accord.train.prefetch import Gauge, Prefetcher
from accord.train.shard_split import Position, ReadPlan, Work, overrides_of, resplit
from accord.train.stream import (
    SHARD_WEIGHTS_KEPT,
    ExampleFn,
    LoaderStats,
    MicroBatchStream,
    StreamConfig,
    Unit,
    batch_nbytes,
)

__all__ = [
    "Batch",
    "Example",
    "ExampleFn",
    "LoaderConfig",
    "LoaderStats",
    "Selection",
    "StageLoader",
    "collate",
    "gather_state",
    "merge_rank_states",
    "rng_for",
    "select_samples",
]

log = logging.getLogger(__name__)

SELECT_BATCH_ROWS = 1024  # samples.parquet rows held as Python dicts at once (start-up pass, fallback)
PARQUET_BUFFER_BYTES = 1 << 20  # column chunks are read in buffers this big, not whole


# --- selection --------------------------------------------------------------------------------


def dataset_of(row: dict[str, Any]) -> str:
    """The dataset a clip belongs to: an explicit ``dataset`` column, else its source folder."""
    if row.get("dataset"):
        return str(row["dataset"])
    uri = str(row.get("source_uri") or "")
    parent = PurePosixPath(uri.split("://", 1)[-1]).parent.name
    return parent or "default"


def stage_thresholds(
    root: str, eligibility: str | dict[str, Any] | None = None
) -> dict[str, StageThresholds]:
    """The thresholds in force for training on the shards under ``root``: the defaults, overridden
    by the tokenize run's ``eligibility`` (recorded in ``tokenize.json``: what selected the shards'
    clips), then by ``eligibility`` (the recipe's / run's overrides, ``{stage: {threshold:
    value}}`` or a thresholds YAML, as everywhere else)."""
    recorded = (read_tokenize_json(root) or {}).get("eligibility")
    return load_thresholds(eligibility, base=load_thresholds(recorded))


@dataclass(frozen=True)
class WeightRule:
    """A clip's expected copies per epoch from its ``samples.parquet`` row (0: not selected):
    eligible for ``stage`` under ``thresholds``, times its dataset's weight."""

    stage: str
    thresholds: dict[str, StageThresholds]
    dataset_weights: dict[str, float]  # dataset -> weight; "*": every other dataset's (default 1)

    def __call__(self, row: dict[str, Any]) -> float:
        if not eligible_for(row, self.stage, self.thresholds):
            return 0.0
        w = float(self.dataset_weights.get(dataset_of(row), self.dataset_weights.get("*", 1.0)))
        return w if w > 0 else 0.0


def iter_sample_rows(uri: str, shard: str | None = None) -> Iterator[list[dict[str, Any]]]:
    """The rows of a ``SAMPLE_SCHEMA`` Parquet file (``samples.parquet`` or a shard's part), as
    Python dicts ``SELECT_BATCH_ROWS`` at a time: a streaming read (fsspec, ranged reads on object
    stores), so memory is one batch whatever the file's size. ``shard``: only its rows (row groups
    whose ``shard`` statistics exclude it are not read)."""
    fs, path = fsspec.core.url_to_fs(uri)
    try:
        with fs.open(path, "rb", block_size=READ_BLOCK_BYTES) as f:
            pf = pq.ParquetFile(f, buffer_size=PARQUET_BUFFER_BYTES)
            groups = None if shard is None else row_groups_with(pf, "shard", shard)
            for batch in pf.iter_batches(SELECT_BATCH_ROWS, row_groups=groups, use_threads=False):
                if shard is not None:
                    batch = batch.filter(pc.equal(batch.column("shard"), shard))
                yield upgrade_samples(pa.Table.from_batches([batch])).to_pylist()
    except pa.ArrowException as e:
        raise unreadable(uri, e) from e


def row_groups_with(pf: pq.ParquetFile, column: str, value: str) -> list[int]:
    """The row groups of ``pf`` whose min/max statistics of ``column`` admit ``value``."""
    meta = pf.metadata
    paths = [meta.schema.column(j).path for j in range(meta.num_columns)]
    if column not in paths:
        return list(range(meta.num_row_groups))
    j = paths.index(column)
    out = []
    for i in range(meta.num_row_groups):
        st = meta.row_group(i).column(j).statistics
        known = st is not None and st.has_min_max and isinstance(st.min, str) and isinstance(st.max, str)
        if not known or st.min <= value <= st.max:
            out.append(i)
    return out


def weight_digest(clip_id: str, w: float) -> int:
    """One selected clip's share of its shard's digest (a sum: the order of rows does not count)."""
    return zlib.crc32(f"{clip_id}\x00{w!r}".encode())


@dataclass
class ShardTally:
    """What the start-up pass keeps of one shard: its selected clips' count and digest, against
    which the shard's part is checked when the stream opens it (no per-clip state)."""

    selected: int = 0
    digest: int = 0

    def add(self, clip_id: str, w: float) -> None:
        self.selected += 1
        self.digest = (self.digest + weight_digest(clip_id, w)) & 0xFFFFFFFFFFFFFFFF


@dataclass
class Selection:
    """Which clips a stage trains on and with what weight, held per shard.

    The start-up pass (:func:`select_samples`) keeps per shard only a tally; a shard's weights
    (clip_id -> expected copies per epoch) are computed from its ``parts/<shard>.parquet`` when
    the stream opens it (:meth:`shard_weights`), so memory follows the largest shard, not the
    corpus. A part that is missing, unreadable or disagrees with ``samples.parquet`` (its tally)
    is replaced by that shard's rows of ``samples.parquet`` (streamed), with a warning.
    """

    root: str
    rule: WeightRule
    shards: list[str]  # shard names relative to the shards root, with a selected clip, index order
    tallies: dict[str, ShardTally] = field(default_factory=dict)  # shard -> its selected clips
    n_candidates: int = 0  # samples.parquet rows
    index_rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # shard -> index.parquet row
    cache: OrderedDict[str, dict[str, float]] = field(default_factory=OrderedDict, repr=False, compare=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def n_selected(self) -> int:
        """Selected rows of ``samples.parquet`` (clips, unless an id is in two shards)."""
        return sum(t.selected for t in self.tallies.values())

    def shard_weights(self, name: str) -> dict[str, float]:
        """clip_id -> weight (> 0) of shard ``name``'s selected clips (the last
        ``SHARD_WEIGHTS_KEPT`` shards' are kept: prefetch, resume, a one-shard corpus)."""
        with self.lock:
            if name in self.cache:
                self.cache.move_to_end(name)
                return self.cache[name]
        weights = self.read_weights(name)
        with self.lock:
            self.cache[name] = weights
            while len(self.cache) > SHARD_WEIGHTS_KEPT:
                self.cache.popitem(last=False)
        return weights

    def read_weights(self, name: str) -> dict[str, float]:
        """From the shard's part (small, one read), checked against the start-up pass's tally."""
        part = join_uri(self.root, PARTS_DIR, f"{name}.parquet")
        want = self.tallies.get(name, ShardTally())
        try:
            weights, tally = self.weigh(iter_sample_rows(part))
            if (tally.selected, tally.digest) == (want.selected, want.digest):
                return weights
            why = f"selects {tally.selected} clips, samples.parquet {want.selected} (or other weights)"
        except (OSError, UnreadableFileError) as e:  # missing, or not whole Parquet
            why = str(e)
        log.warning("%s: %s; selecting its clips from samples.parquet instead", part, why)
        return self.weigh(iter_sample_rows(shards_file(self.root, SAMPLES_PARQUET), shard=name))[0]

    def weigh(self, batches: Iterator[list[dict[str, Any]]]) -> tuple[dict[str, float], ShardTally]:
        """The rule over ``batches`` of rows: clip_id -> weight (an id's last row decides) and tally."""
        weights: dict[str, float] = {}
        tally = ShardTally()
        for rows in batches:
            for row in rows:
                w = self.rule(row)
                if w > 0:
                    weights[str(row["clip_id"])] = w
                    tally.add(str(row["clip_id"]), w)
        return weights, tally

    def iter_weights(self) -> Iterator[tuple[str, float]]:
        """(clip_id, weight) of every selected clip, shard by shard in :attr:`shards` order: for
        tests and small corpora (each shard's part is read)."""
        for name in self.shards:
            yield from self.shard_weights(name).items()


def select_samples(
    root: str,
    stage: str,
    dataset_weights: dict[str, float] | None = None,
    eligibility: str | dict[str, Any] | None = None,
) -> Selection:
    """Pick the stage's clips under ``root``: those :func:`accord.core.eligibility.eligible_for`
    finds eligible for ``stage`` under :func:`stage_thresholds` (``eligibility``: overrides on
    top), weighted by dataset. One streaming pass over ``samples.parquet`` finds the shards with a
    selected clip (in ``index.parquet`` order) and tallies them; no per-clip state is kept (a
    shard's weights are read when it is opened: :meth:`Selection.shard_weights`)."""
    stage_index(stage)
    rule = WeightRule(stage, stage_thresholds(root, eligibility), dict(dataset_weights or {}))
    index = read_index(root)
    index_rows: dict[str, dict[str, Any]] = {}  # what the loader checks each done marker against
    if index is not None:
        recorded = [c for c in ("shard", "n_samples", "bytes", CHECKSUM_KEY) if c in index.column_names]
        index_rows = {r["shard"]: r for r in index.select(recorded).to_pylist()}
    tallies: dict[str, ShardTally] = {}
    n_rows = 0
    for rows in iter_sample_rows(shards_file(root, SAMPLES_PARQUET)):
        n_rows += len(rows)
        for row in rows:
            w = rule(row)
            if w > 0:
                tallies.setdefault(str(row["shard"]), ShardTally()).add(str(row["clip_id"]), w)
    shards = index["shard"].to_pylist() if index is not None else sorted(tallies)
    shards = [s for s in shards if s in tallies]
    return Selection(root, rule, shards, tallies, n_candidates=n_rows, index_rows=index_rows)


# --- the stream -------------------------------------------------------------------------------


@dataclass
class LoaderConfig:
    root: str  # shards root: holds shards/, index.parquet, samples.parquet
    stage: str
    max_frames: int
    seqs_per_batch: int = 1
    seed: int = 1234
    dataset_weights: dict[str, float] = field(default_factory=dict)
    eligibility: str | dict[str, Any] | None = None  # {stage: {threshold: value}} over tokenize's
    audio_pad_id: int = AUDIO_PAD_ID
    text_pad_id: int = PAD_ID
    max_epochs: int | None = None  # None: cycle forever (ranks of a split read end separately)
    read_mode: str = "strided"  # strided | split (accord.train.shard_split)
    prefetch: int = 0  # this rank's micro-batches produced ahead in a background thread (0: inline)
    shuffle_window_mb: float = 256.0  # a shard's items are shuffled within windows this big (0: whole)


def epoch_shard_order(seed: int, shards: tuple[str, ...], epoch: int) -> list[str]:
    """The epoch's shard order: a permutation keyed on ``(seed, epoch)``."""
    perm = rng_for(seed, "shards", epoch).permutation(len(shards))
    return [shards[i] for i in perm]


def shard_cost(index_rows: dict[str, dict[str, Any]], work: Work) -> float:
    """Bytes left to read of ``work`` (``index.parquet``'s ``bytes``; a started shard by the share
    of its samples left): what :func:`accord.train.shard_split.deal` balances."""
    row = index_rows.get(work[0]) or {}
    n_bytes, n = float(row.get("bytes") or 1.0), int(row.get("n_samples") or 0)
    return n_bytes * max(0.0, 1.0 - work[1] / n) if n else n_bytes


def checked_record(root: str, index_rows: dict[str, dict[str, Any]], name: str) -> ShardRecord:
    """The shard's done-marker record, if it matches the index row the selection came from."""
    record = read_record(root, name)
    if record is None:
        raise ShardError(f"{name}: no done marker, so not a finished shard; re-run accord tokenize")
    row = index_rows.get(name)
    why = record.mismatch(row) if row is not None else None
    if why is not None:
        raise ShardError(
            f"{name}: its done marker does not match index.parquet ({why}): rewritten after the "
            "index was built; re-run accord tokenize to finish and re-index"
        )
    return record


def merge_rank_states(states: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every rank's :meth:`StageLoader.state_dict` (in rank order), each with every rank's
    position added (``ranks``) and the overrides of epochs every rank has finished dropped: what
    a checkpoint records, so a resume on another world size can re-split."""
    ranks = [[int(s["epoch"]), int(s["shard_pos"]), int(s["item_pos"])] for s in states]
    lo = min(r[0] for r in ranks)
    overrides = {e: w for e, w in (states[0].get("overrides") or {}).items() if int(e) >= lo}
    return [{**s, "ranks": ranks, "overrides": overrides} for s in states]


def gather_state(state: dict[str, Any]) -> dict[str, Any]:
    """This rank's loader state with every rank's position in it (a collective: every rank calls
    it); the state itself on one process."""
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return merge_rank_states([state])[0]
    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, state)
    return merge_rank_states(states)[dist.get_rank()]


class StageLoader:
    """Deterministic, resumable iterator of this rank's micro-batches for one stage.

    ``build(sample, epoch)`` turns a decoded shard sample into an :class:`Example` (transcript
    choice, conditioning, dropout, loss masks: all keyed on ``(seed, epoch, clip)``), or None.
    Which shards this rank reads is ``cfg.read_mode``'s (:mod:`accord.train.shard_split`); the
    micro-batches come from :class:`accord.train.stream.MicroBatchStream`, inline or (``prefetch``
    > 0) from its background thread. The state is the position after the last micro-batch the
    training thread took: what was prefetched and not taken is not consumed.
    """

    def __init__(self, cfg: LoaderConfig, build: ExampleFn, rank: int = 0, world: int = 1) -> None:
        self.cfg = cfg
        self.build = build
        self.rank, self.world = rank, world
        self.selection = select_samples(cfg.root, cfg.stage, cfg.dataset_weights, cfg.eligibility)
        if not self.selection.n_selected:
            raise ValueError(
                f"no clip under {cfg.root} is eligible for stage {cfg.stage!r} "
                f"({self.selection.n_candidates} candidates)"
            )
        if cfg.prefetch < 0:
            raise ConfigError(f"data prefetch must be >= 0, got {cfg.prefetch}")
        self.plan = self.new_plan(cfg.read_mode, world)
        if cfg.read_mode == "split" and len(self.selection.shards) < world:
            raise ConfigError(
                f"read_mode split: {len(self.selection.shards)} shard(s) of stage {cfg.stage!r} cannot "
                f"feed {world} ranks (each reads whole shards); use data.read_mode=strided, or more, "
                "smaller shards"
            )
        self.stats = LoaderStats()
        # position of the first item not yet in a micro-batch this rank took
        self.epoch, self.shard_pos, self.item_pos, self.global_batch = 0, 0, 0, 0
        self.gauge = Gauge()
        self.data_wait_s = 0.0
        self.feed: Iterator[Unit] | None = None
        self.prefetcher: Prefetcher[Unit] | None = None

    def new_plan(self, mode: str, world: int) -> ReadPlan:
        rows = self.selection.index_rows
        return ReadPlan(
            mode,
            world,
            functools.partial(epoch_shard_order, self.cfg.seed, tuple(self.selection.shards)),
            functools.partial(shard_cost, rows),
        )

    # position -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """This rank's position and counters (:func:`gather_state` adds every rank's position)."""
        return {
            "epoch": self.epoch,
            "shard_pos": self.shard_pos,
            "item_pos": self.item_pos,
            "global_batch": self.global_batch,
            "stats": {k: v for k, v in vars(self.stats).items() if k != "skipped_shards"},
            **self.plan.state(),
        }

    def io_stats(self) -> dict[str, float]:
        """What this process's loading cost (not part of the state: timings differ between runs):
        ``data_wait_s``, the time the training thread waited for micro-batches; ``bytes_read``, the
        shard bytes read; ``peak_loader_bytes``, the most the loader held at once (the shard
        window being shuffled plus the queued micro-batches, as counted by ``sample_nbytes`` /
        ``batch_nbytes``)."""
        return {
            "data_wait_s": self.data_wait_s,
            "bytes_read": self.stats.bytes_read,
            "peak_loader_bytes": self.gauge.peak,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``: exactly, on the same world size and read mode; else re-split
        from every rank's recorded position (``ranks``, :func:`gather_state`) with nothing repeated
        or skipped (:func:`accord.train.shard_split.resplit`). States from before read modes
        existed are ``strided``."""
        self.close()
        mode, world = str(state.get("read_mode", "strided")), int(state.get("world", self.world))
        old = self.new_plan(mode, world)
        old.overrides = overrides_of(state)
        pos: Position = (int(state["epoch"]), int(state["shard_pos"]), int(state["item_pos"]))
        ranks = [tuple(int(x) for x in r) for r in state.get("ranks") or []]
        same = mode == self.plan.mode and (mode == "strided" or world == self.world)
        if same and mode == "split" and state.get("rank", self.rank) != self.rank:
            if len(ranks) != world:
                raise ValueError(
                    f"loader state of rank {state.get('rank')} lacks rank {self.rank}'s position"
                )
            pos = ranks[self.rank]  # type: ignore[assignment]
        if same:
            self.plan.overrides = old.overrides
        else:
            if mode == "split" and len(ranks) != world:
                raise ValueError(
                    f"cannot re-split a {world}-rank split read for {self.world} ranks: the state lacks "
                    "every rank's position (save it through gather_state)"
                )
            self.plan, pos = resplit(old, ranks if mode == "split" else [pos], self.plan)
            log.info(
                "loader: %s read over %d ranks re-split as %s over %d from epoch %d",
                mode, world, self.plan.mode, self.world, pos[0],
            )  # fmt: skip
        self.epoch, self.shard_pos, self.item_pos = pos
        self.global_batch = int(state["global_batch"])
        for k, v in (state.get("stats") or {}).items():
            setattr(self.stats, k, v)

    # plan -----------------------------------------------------------------------------------
    def shard_order(self, epoch: int) -> list[str]:
        return self.plan.order(epoch)

    def my_shards(self, epoch: int) -> list[Work]:
        """This rank's work for ``epoch`` (every shard's, strided)."""
        return self.plan.work(epoch, self.rank)

    # stream ---------------------------------------------------------------------------------
    def open_feed(self) -> Iterator[Unit]:
        cfg = self.cfg
        stream = MicroBatchStream(
            StreamConfig(
                root=cfg.root,
                stage=cfg.stage,
                max_frames=cfg.max_frames,
                seqs_per_batch=cfg.seqs_per_batch,
                seed=cfg.seed,
                audio_pad_id=cfg.audio_pad_id,
                text_pad_id=cfg.text_pad_id,
                max_epochs=cfg.max_epochs,
                shuffle_window_mb=cfg.shuffle_window_mb,
            ),
            self.build,
            self.selection.shard_weights,
            functools.partial(checked_record, cfg.root, self.selection.index_rows),
            copy.deepcopy(self.plan),
            self.rank,
            (self.epoch, self.shard_pos, self.item_pos),
            self.stats,
            self.gauge,
        )
        if not cfg.prefetch:
            return iter(stream)
        per_unit = self.world if self.plan.mode == "strided" else 1
        self.prefetcher = Prefetcher(
            iter(stream),
            cfg.prefetch * per_unit,
            lambda u: batch_nbytes(u.batch),
            self.gauge,
            f"loader-r{self.rank}",
        )
        self.prefetcher.finalize_with(self)
        return self.prefetcher

    def close(self) -> None:
        """Stop the prefetch thread (if any) and drop what it read ahead; the position is kept."""
        if self.prefetcher is not None:
            self.prefetcher.close()
        self.feed = self.prefetcher = None

    def step_batches(self, grad_accum: int) -> list[Batch]:
        """This rank's ``grad_accum`` micro-batches of the next optimizer step.

        ``strided``: consumes ``world * grad_accum`` global micro-batches and keeps every
        ``world``-th; every rank ends with the same position. ``split``: this rank's own
        ``grad_accum``. Raises ``StopIteration`` when ``max_epochs`` is reached.
        """
        strided = self.plan.mode == "strided"
        need = self.world * grad_accum if strided else grad_accum
        if self.feed is None:
            self.feed = self.open_feed()
        mine: list[Batch] = []
        t0 = time.perf_counter()
        try:
            for _ in range(need):
                try:
                    unit = next(self.feed)
                except StopIteration:
                    raise StopIteration("data exhausted (max_epochs reached)") from None
                if unit.batch is not None:
                    mine.append(unit.batch)
                self.stats = unit.stats
                self.epoch, self.shard_pos, self.item_pos = unit.pos
                self.global_batch += 1 if strided else self.world
        finally:
            self.data_wait_s += time.perf_counter() - t0
        return mine
