"""Training data: WebDataset shards -> stage-filtered, packed, rank-strided micro-batches.

The stream is a pure function of ``(seed, epoch)`` and the shard set, so its position is three
integers and resuming is exact:

- shards are read whole (local path or any fsspec URL), in a per-epoch permuted order, and
  each shard's samples in a per-(epoch, shard) permuted order. Only shards whose done marker
  matches their ``index.parquet`` row are read (a shard rewritten after the index, or never
  finished, is skipped, logged and counted); each is checked against its marker's record
  (``accord.core.shards.ShardRecord``: sample count and per-sample checksums). A shard that
  fails to read (truncated, corrupt) is skipped, logged and counted; a bad member, a changed
  byte or a sample lost to a damaged tar header skips only its sample, counted.
- which clips a stage sees comes from ``samples.parquet``: eligibility recomputed from each
  clip's stored signals with ``accord.core.eligibility.eligible_for`` under the thresholds in
  force (:func:`stage_thresholds`: the defaults, the tokenize run's overrides recorded in
  ``tokenize.json``, the recipe's ``data.eligibility``), never the flag stored in the shard;
  dataset weights repeat or subsample clips per epoch.
- clips are packed greedily into rows of at most ``max_frames`` rows, each clip keeping its
  own ``doc_id`` so attention stays inside it; ``seqs_per_batch`` rows make a micro-batch.
- every rank builds the same global stream of micro-batches and takes indices
  ``g % world == rank``: ``world`` ranks with ``grad_accum`` A see exactly the micro-batches
  one process with ``grad_accum`` ``world * A`` sees, which makes runs comparable across
  world sizes. The cost is that every rank reads every shard (fine for the shard sizes here;
  a shard-split mode is the next step for large clusters).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import torch

from accord.core.eligibility import StageThresholds, eligible_for, load_thresholds
from accord.core.shards import (
    CHECKSUM_KEY,
    ShardError,
    ShardRecord,
    ShardSample,
    read_index,
    read_record,
    read_samples,
    read_shard,
    read_tokenize_json,
    shard_tar_uri,
)
from accord.core.stages import stage_index
from accord.core.vocab import AUDIO_PAD_ID, PAD_ID

log = logging.getLogger(__name__)


def rng_for(seed: int, *keys: Any) -> np.random.Generator:
    """A generator keyed on the seed and any stable keys (epoch, clip id, purpose)."""
    words = [seed & 0xFFFFFFFF] + [zlib.crc32(str(k).encode()) for k in keys]
    return np.random.default_rng(words)


# --- selection --------------------------------------------------------------------------------


@dataclass
class Selection:
    """Which clips a stage trains on and with what weight."""

    weights: dict[str, float]  # clip_id -> expected copies per epoch
    shards: list[str]  # shard names relative to the shards root
    n_candidates: int = 0
    index_rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # shard -> index.parquet row


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


def select_samples(
    root: str,
    stage: str,
    dataset_weights: dict[str, float] | None = None,
    eligibility: str | dict[str, Any] | None = None,
) -> Selection:
    """Read ``samples.parquet`` and ``index.parquet`` under ``root`` and pick the stage's clips:
    those :func:`accord.core.eligibility.eligible_for` finds eligible for ``stage`` under
    :func:`stage_thresholds` (``eligibility``: overrides on top), weighted by dataset."""
    stage_index(stage)
    thresholds = stage_thresholds(root, eligibility)
    rows = read_samples(root).to_pylist()
    index = read_index(root)
    shards = index["shard"].to_pylist() if index is not None else sorted({r["shard"] for r in rows})
    index_rows: dict[str, dict[str, Any]] = {}  # what the loader checks each done marker against
    if index is not None:
        recorded = [c for c in ("shard", "n_samples", "bytes", CHECKSUM_KEY) if c in index.column_names]
        index_rows = {r["shard"]: r for r in index.select(recorded).to_pylist()}
    dw = dict(dataset_weights or {})
    default_w = float(dw.pop("*", 1.0))
    weights: dict[str, float] = {}
    for row in rows:
        if not eligible_for(row, stage, thresholds):
            continue
        w = float(dw.get(dataset_of(row), default_w))
        if w > 0:
            weights[str(row["clip_id"])] = w
    used = sorted({r["shard"] for r in rows if str(r["clip_id"]) in weights})
    shards = [s for s in shards if s in set(used)]
    return Selection(weights=weights, shards=shards, n_candidates=len(rows), index_rows=index_rows)


# --- packing ----------------------------------------------------------------------------------


@dataclass
class Example:
    """One clip's training sequence (built by ``accord.train.examples``)."""

    clip_id: str
    ids_TC: torch.Tensor  # int64 [T, K+1]
    mask_TK: torch.Tensor  # bool [T, K]: row t's audio ids are prediction targets
    speaker_S: torch.Tensor | None = None  # raw speaker embedding for row 0, or None


@dataclass
class Batch:
    ids_BTC: torch.Tensor
    mask_BTK: torch.Tensor
    doc_ids_BT: torch.Tensor
    speaker_NS: torch.Tensor | None
    speaker_pos_N2: torch.Tensor | None
    clip_ids: list[str]
    n_frames: int  # real (non-pad) rows

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        mv = lambda t: None if t is None else fn(t)  # noqa: E731
        return Batch(
            mv(self.ids_BTC),
            mv(self.mask_BTK),
            mv(self.doc_ids_BT),
            mv(self.speaker_NS),
            mv(self.speaker_pos_N2),
            self.clip_ids,
            self.n_frames,
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """Page-locked copies: a ``non_blocking`` upload from them does not make the host wait."""
        return self._map(torch.Tensor.pin_memory)

    def to_device(self, device: torch.device) -> Batch:
        """On ``device`` without a host sync: CUDA uploads go from pinned memory, asynchronously.

        A copy from pageable memory is synchronous (the host waits for the stream); pinning
        costs one host memcpy and lets the upload overlap with the previous micro-batch.
        """
        if device.type == "cuda":
            return self.pin_memory().to(device, non_blocking=True)
        return self.to(device)


def collate(rows: list[list[Example]], audio_pad_id: int, text_pad_id: int, pad_to: int = 8) -> Batch:
    """Pack rows of examples into padded tensors; pad rows get doc id -1 and no loss."""
    lens = [sum(e.ids_TC.shape[0] for e in row) for row in rows]
    T = max(lens)
    T = (T + pad_to - 1) // pad_to * pad_to
    C = rows[0][0].ids_TC.shape[1]
    K = C - 1
    B = len(rows)
    ids = torch.full((B, T, C), audio_pad_id, dtype=torch.long)
    ids[:, :, K] = text_pad_id
    mask = torch.zeros((B, T, K), dtype=torch.bool)
    doc = torch.full((B, T), -1, dtype=torch.long)
    spk: list[torch.Tensor] = []
    pos: list[tuple[int, int]] = []
    clip_ids: list[str] = []
    for b, row in enumerate(rows):
        t = 0
        for d, e in enumerate(row):
            n = e.ids_TC.shape[0]
            ids[b, t : t + n] = e.ids_TC
            mask[b, t : t + n] = e.mask_TK
            doc[b, t : t + n] = d
            if e.speaker_S is not None:
                spk.append(e.speaker_S.float())
                pos.append((b, t))
            clip_ids.append(e.clip_id)
            t += n
    return Batch(
        ids_BTC=ids,
        mask_BTK=mask,
        doc_ids_BT=doc,
        speaker_NS=torch.stack(spk) if spk else None,
        speaker_pos_N2=torch.tensor(pos, dtype=torch.long) if pos else None,
        clip_ids=clip_ids,
        n_frames=sum(lens),
    )


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
    max_epochs: int | None = None  # None: cycle forever


@dataclass
class LoaderStats:
    shards_read: int = 0
    corrupt_shards: int = 0
    unverified_shards: int = 0  # no done marker, or one that does not match index.parquet
    corrupt_samples: int = 0
    too_long: int = 0
    build_errors: int = 0
    samples: int = 0
    batches: int = 0
    skipped_shards: list[str] = field(default_factory=list)


ExampleFn = Callable[[ShardSample, int], Example | None]


class StageLoader:
    """Deterministic, resumable iterator of this rank's micro-batches for one stage.

    ``build(sample, epoch)`` turns a decoded shard sample into an :class:`Example` (transcript
    choice, conditioning, dropout, loss masks: all keyed on ``(seed, epoch, clip)``), or None.
    """

    def __init__(self, cfg: LoaderConfig, build: ExampleFn, rank: int = 0, world: int = 1) -> None:
        self.cfg = cfg
        self.build = build
        self.rank, self.world = rank, world
        self.selection = select_samples(cfg.root, cfg.stage, cfg.dataset_weights, cfg.eligibility)
        if not self.selection.weights:
            raise ValueError(
                f"no clip under {cfg.root} is eligible for stage {cfg.stage!r} "
                f"({self.selection.n_candidates} candidates)"
            )
        self.stats = LoaderStats()
        self.cache_shards = 3
        # position of the first item not yet in an emitted micro-batch
        self.epoch, self.shard_pos, self.item_pos, self.global_batch = 0, 0, 0, 0
        self._cache: dict[tuple[int, int], list[ShardSample]] = {}  # a few recent shards

    # position -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "shard_pos": self.shard_pos,
            "item_pos": self.item_pos,
            "global_batch": self.global_batch,
            "stats": {k: v for k, v in vars(self.stats).items() if k != "skipped_shards"},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.shard_pos = int(state["shard_pos"])
        self.item_pos = int(state["item_pos"])
        self.global_batch = int(state["global_batch"])
        for k, v in (state.get("stats") or {}).items():
            setattr(self.stats, k, v)

    # plan -----------------------------------------------------------------------------------
    def shard_order(self, epoch: int) -> list[str]:
        names = list(self.selection.shards)
        perm = rng_for(self.cfg.seed, "shards", epoch).permutation(len(names))
        return [names[i] for i in perm]

    def _shard_items(self, epoch: int, shard_pos: int) -> list[ShardSample]:
        """The epoch-ordered, weight-expanded samples of one shard ([] if it is unreadable)."""
        if (epoch, shard_pos) in self._cache:
            items = self._cache.pop((epoch, shard_pos))  # most recently used goes last
            self._cache[(epoch, shard_pos)] = items
            return items
        name = self.shard_order(epoch)[shard_pos]
        url = shard_tar_uri(self.cfg.root, name)
        samples: list[ShardSample] = []
        try:
            record = self._record(name)
        except ShardError as e:
            self.stats.unverified_shards += 1
            self.stats.skipped_shards.append(name)
            log.warning("skipping shard %s (epoch %d): %s", url, epoch, e)
        else:
            try:
                samples, bad = read_shard(url, record)
                self.stats.corrupt_samples += bad
                self.stats.shards_read += 1
            except ShardError as e:
                self.stats.corrupt_shards += 1
                self.stats.skipped_shards.append(name)
                log.warning("skipping shard %s (epoch %d): %s", url, epoch, e)
        items: list[ShardSample] = []
        for s in samples:
            w = self.selection.weights.get(s.clip_id, 0.0)
            if w <= 0:
                continue
            whole = int(w)
            extra = rng_for(self.cfg.seed, "weight", epoch, s.clip_id).random() < (w - whole)
            items.extend([s] * (whole + int(extra)))
        perm = rng_for(self.cfg.seed, "order", epoch, name).permutation(len(items))
        items = [items[i] for i in perm]
        self._cache[(epoch, shard_pos)] = items
        while len(self._cache) > self.cache_shards:
            self._cache.pop(next(iter(self._cache)))
        return items

    def _record(self, name: str) -> ShardRecord:
        """The shard's done-marker record, if it matches the index row the selection came from."""
        record = read_record(self.cfg.root, name)
        if record is None:
            raise ShardError(f"{name}: no done marker, so not a finished shard; re-run accord tokenize")
        row = self.selection.index_rows.get(name)
        why = record.mismatch(row) if row is not None else None
        if why is not None:
            raise ShardError(
                f"{name}: its done marker does not match index.parquet ({why}): rewritten after the "
                "index was built; re-run accord tokenize to finish and re-index"
            )
        return record

    def _items(self) -> Iterator[tuple[tuple[int, int, int], ShardSample]]:
        """(position, sample) from the current position on, across epochs."""
        epoch, sp, ip = self.epoch, self.shard_pos, self.item_pos
        empty_epochs = 0
        while self.cfg.max_epochs is None or epoch < self.cfg.max_epochs:
            order = self.shard_order(epoch)
            yielded = False
            while sp < len(order):
                items = self._shard_items(epoch, sp)
                while ip < len(items):
                    yielded = True
                    yield (epoch, sp, ip), items[ip]
                    ip += 1
                sp, ip = sp + 1, 0
            empty_epochs = 0 if yielded else empty_epochs + 1
            if empty_epochs >= 2:
                raise RuntimeError(f"no readable sample for stage {self.cfg.stage!r} in two epochs")
            epoch, sp = epoch + 1, 0

    def _global_batches(self) -> Iterator[tuple[list[list[Example]], tuple[int, int, int]]]:
        """Greedy packing: (rows, position of the first item not in them)."""
        cfg = self.cfg
        rows: list[list[Example]] = [[]]
        used = [0]
        for pos, sample in self._items():
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
            yield rows, (self.cfg.max_epochs or 0, 0, 0)

    def step_batches(self, grad_accum: int) -> list[Batch]:
        """This rank's ``grad_accum`` micro-batches of the next optimizer step.

        Consumes ``world * grad_accum`` global micro-batches and advances the position past
        them; every rank ends with the same position.
        """
        need = self.world * grad_accum
        mine: list[Batch] = []
        gen = self._global_batches()
        for j in range(need):
            try:
                rows, next_pos = next(gen)
            except StopIteration:
                raise StopIteration("data exhausted (max_epochs reached)") from None
            if j % self.world == self.rank:
                mine.append(collate(rows, self.cfg.audio_pad_id, self.cfg.text_pad_id))
            last_pos = next_pos
            self.global_batch += 1
            self.stats.batches += 1
        gen.close()
        self.epoch, self.shard_pos, self.item_pos = last_pos
        return mine
