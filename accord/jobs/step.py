"""The step contract shared by every ingest and tokenize stage (NeMo SDP style: one class per step).

A step turns one item (a plain ``dict``) into zero or more items. Model steps also accept
a batch. Steps never see Ray: the job runner (:mod:`accord.jobs`) wraps them in Ray Data
tasks or actor pools, or runs them in-process, and tests call ``process`` directly. A
per-item failure raises :class:`ItemError`; the runner turns it into an ``ERROR_SCHEMA`` row
(:mod:`accord.core.errors`) and carries on with the other items.

Each step class declares the item keys it reads and writes (:class:`Step`); a job checks and
orders its steps from these declarations (:mod:`accord.jobs.contract`) before anything runs, and
checks every output item against ``writes`` while it runs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar

Item = dict[str, Any]


class ItemError(Exception):
    """A failure of one item: recorded in ``errors/`` with ``step`` and ``error_type``."""

    def __init__(self, step: str, error_type: str, reason: str) -> None:
        super().__init__(f"[{step}] {error_type}: {reason}")
        self.step = step
        self.error_type = error_type
        self.reason = reason


class Step(ABC):
    """One pipeline step. ``setup`` loads heavy state once per worker (models, sessions).

    What a step touches is declared on its class, as item keys (``"transcripts.text"`` names the
    ``text`` field of every element of the ``transcripts`` list):

    - ``reads``: keys the step needs; an earlier step (or the job's unit item) must write them,
      else the plan is refused. A step that reads a key runs after every step that writes it.
    - ``may_read``: keys the step uses when they are there (a signal that may be switched off);
      nothing need write them, but a step that does runs before this one.
    - ``writes``: output columns (the job's row schema, e.g. ``CLIP_SCHEMA``) that every item the
      step outputs carries. A name that is not a column is refused when the plan is built; an
      output item that lacks one is an error of that item and step while the job runs.
    - ``carries``: working keys the step may set that never reach the output rows (``audio_16k``,
      ``vad_probs``, ``_speaker_changes``): other steps can read them, the schema never sees them.

    A key a step both reads and writes is updated in place (``transcripts``: each step adds its
    fields): that orders nothing by itself. Undeclared keys an item already had pass through.
    """

    name: str = "step"
    reads: ClassVar[tuple[str, ...]] = ()
    may_read: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    carries: ClassVar[tuple[str, ...]] = ()

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
