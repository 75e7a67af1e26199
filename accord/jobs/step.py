"""The step contract shared by every ingest and tokenize stage (NeMo SDP style: one class per step).

A step turns one item (a plain ``dict``) into zero or more items. Model steps also accept
a batch. Steps never see Ray: the job runner (:mod:`accord.jobs`) wraps them in Ray Data
tasks or actor pools, or runs them in-process, and tests call ``process`` directly. A
per-item failure raises :class:`ItemError`; the runner turns it into an ``ERROR_SCHEMA`` row
(:mod:`accord.core.errors`) and carries on with the other items.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

Item = dict[str, Any]


class ItemError(Exception):
    """A failure of one item: recorded in ``errors/`` with ``step`` and ``error_type``."""

    def __init__(self, step: str, error_type: str, reason: str) -> None:
        super().__init__(f"[{step}] {error_type}: {reason}")
        self.step = step
        self.error_type = error_type
        self.reason = reason


class Step(ABC):
    """One pipeline step. ``setup`` loads heavy state once per worker (models, sessions)."""

    name: str = "step"

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Load models or other per-process state; called once before the first item."""

    @abstractmethod
    def process(self, item: Item) -> list[Item]:
        """Return the items this one becomes (``[]`` drops it, more than one splits it)."""

    def iter_process(self, item: Item) -> Iterator[Item]:
        """Lazy form of :meth:`process`. Steps whose output is large (every clip of an
        hour-long source) override it to yield items as they are made, so the job streams
        them out in bounded blocks instead of holding them all."""
        yield from self.process(item)

    def outputs(self, item: Item) -> Iterator[Item]:
        """What the job calls: :meth:`iter_process`, unless a subclass overrode :meth:`process`
        below the class that defines ``iter_process`` (a site's ``step_targets`` class that
        customises ``process`` of a streaming step must not be bypassed)."""
        mro = type(self).__mro__
        by_process = next(c for c in mro if "process" in vars(c))
        by_iter = next(c for c in mro if "iter_process" in vars(c))
        if by_process is not by_iter and issubclass(by_process, by_iter):
            yield from self.process(item)
        else:
            yield from self.iter_process(item)

    def process_batch(self, items: list[Item]) -> list[Item | Exception]:
        """Batched form; model steps override it to run one forward over the batch and return
        one result per item, in order: the item, the exception that is its failure alone (e.g. a
        non-finite output), or the list of items it was split into. Raising fails the batch: the
        runner then calls :meth:`process` on each item so one bad item cannot sink its batch-mates."""
        out: list[Item] = []
        for item in items:
            out.extend(self.process(item))
        return out
