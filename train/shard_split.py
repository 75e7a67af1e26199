"""Which shards each data-parallel rank reads per epoch, and how a recorded position re-splits.

Two read modes (the recipe's ``data.read_mode``):

- ``strided``: every rank reads every shard of the epoch's order and keeps the global
  micro-batches ``g % world == rank``. ``world`` ranks with ``grad_accum`` A see exactly what one
  process with ``world * A`` sees (bit-comparable across world sizes); each rank reads, decodes
  and packs the whole corpus.
- ``split``: the epoch's shards (in its seeded order) are dealt to ranks greedily by bytes, each
  to the least-loaded rank so far, so a rank's share is within one shard of ``1/world`` of the
  epoch's bytes; a rank reads, packs and trains on its own shards only. Ranks move through
  epochs independently (a rank with a lighter share starts the next epoch a little earlier).

A rank's work for an epoch is a list of :data:`Work` entries ``(shard, start)``: the shard's
epoch-ordered items from ``start`` on (0 except after a re-split). A rank's position is
``(epoch, entry, offset)``: the first item of ``entry`` (``start + offset``) not yet in a
micro-batch it consumed. The :class:`ReadPlan` plus every rank's position is the whole state.

Re-split (resuming with another world size or read mode): every entry's unconsumed tail, over
the epochs between the slowest and the fastest rank (:meth:`ReadPlan.remaining`), becomes that
epoch's work list (``overrides``), dealt to the new ranks as above; all new ranks start at the
slowest epoch. Items are the same whoever reads them (their order and weight draws are keyed on
epoch and shard), so nothing is repeated or skipped: the documented remainder is zero items.
What changes is which rank trains on which item, and so the micro-batches (packing is per rank).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from accord.core.errors import ConfigError

READ_MODES = ("split", "strided")
Work = tuple[str, int]  # (shard name, first item)
Position = tuple[int, int, int]  # (epoch, entry, offset within the entry)


def deal(work: list[Work], cost: Callable[[Work], float], world: int) -> list[list[Work]]:
    """``work`` dealt to ``world`` ranks in order, each entry to the least-loaded rank (ties: the
    lowest): every rank's total is within one entry's cost of every other's."""
    loads = [0.0] * world
    out: list[list[Work]] = [[] for _ in range(world)]
    for w in work:
        r = min(range(world), key=lambda i: (loads[i], i))
        out[r].append(w)
        loads[r] += max(cost(w), 1e-9)  # a zero-cost entry still counts, so ranks take turns
    return out


@dataclass
class ReadPlan:
    """The work lists of every rank for every epoch: ``order(epoch)`` (the epoch's shard order),
    dealt by ``mode`` over ``world``, except epochs in ``overrides`` (a re-split's remainders)."""

    mode: str
    world: int
    order: Callable[[int], list[str]]
    cost: Callable[[Work], float]
    overrides: dict[int, list[Work]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in READ_MODES:
            raise ConfigError(f"data.read_mode {self.mode!r}: one of {', '.join(READ_MODES)}")

    def epoch_work(self, epoch: int) -> list[Work]:
        """All of the epoch's work, in order (what every rank reads in ``strided`` mode)."""
        if epoch in self.overrides:
            return list(self.overrides[epoch])
        return [(s, 0) for s in self.order(epoch)]

    def work(self, epoch: int, rank: int) -> list[Work]:
        """Rank ``rank``'s work list for ``epoch``."""
        work = self.epoch_work(epoch)
        if self.mode == "strided":
            return work
        return deal(work, self.cost, self.world)[rank]

    def remaining(self, positions: list[Position]) -> dict[int, list[Work]]:
        """The unconsumed work of each epoch from the slowest rank's to the fastest's, given every
        rank's position (``strided``: all ranks share one position, the first is used)."""
        if self.mode == "strided":
            positions = positions[:1]
        lo, hi = min(p[0] for p in positions), max(p[0] for p in positions)
        out: dict[int, list[Work]] = {}
        for epoch in range(lo, hi + 1):
            left: list[Work] = []
            for rank, (e, k, off) in enumerate(positions):
                work = self.work(epoch, rank if self.mode == "split" else 0)
                if epoch > e:
                    left += work
                elif epoch == e:
                    left += [(s, st + off) if i == k else (s, st) for i, (s, st) in enumerate(work) if i >= k]
            first = {s: i for i, s in enumerate(self.order(epoch))}
            out[epoch] = sorted(left, key=lambda w: (first.get(w[0], len(first)), w[0]))
        return out

    def state(self) -> dict[str, Any]:
        """The plan's part of the loader state (``strided`` positions hold for any world size, so
        its world is not recorded)."""
        out: dict[str, Any] = {"read_mode": self.mode}
        if self.mode == "split":
            out["world"] = self.world
        out["overrides"] = {str(e): [list(w) for w in ws] for e, ws in sorted(self.overrides.items())}
        return out


def overrides_of(state: dict[str, Any]) -> dict[int, list[Work]]:
    return {int(e): [(str(s), int(st)) for s, st in ws] for e, ws in (state.get("overrides") or {}).items()}


def resplit(old: ReadPlan, positions: list[Position], new: ReadPlan) -> tuple[ReadPlan, Position]:
    """``new`` (its mode and world) continuing where ``old``'s ranks stand at ``positions``: its
    overrides hold the remainders from the slowest rank's epoch to the fastest's (later epochs
    ``old`` had overrides for, untouched), and every new rank starts at the returned position."""
    left = old.remaining(positions)
    lo, hi = min(left), max(left)
    new.overrides = {**{e: w for e, w in old.overrides.items() if e > hi}, **left}
    return new, (lo, 0, 0)


def forget_before(plan: ReadPlan, epoch: int) -> None:
    """Drop overrides of epochs every rank has finished (they only grow the checkpoint)."""
    for e in [e for e in plan.overrides if e < epoch]:
        del plan.overrides[e]
