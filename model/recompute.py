"""Choices that activation-checkpoint recomputation replays instead of making again.

Non-reentrant checkpointing runs a block twice: in the forward, and again in the backward to
rebuild what it did not keep. If a kernel is chosen inside the block (SDPA's dispatcher, an
"auto" MoE kernel), the second run may choose another one, save a different set of tensors
and fail (``CheckpointError: ... 77 vs 74``) or, worse, produce other numbers. Code that
chooses inside a block wraps the choice in :func:`recompute_stable`; the checkpoint wrapper
(``accord.train.engine.apply_activation_checkpointing``) enters :func:`choice_log_contexts`,
so the forward records every choice in order and the recomputation replays the record.
Outside a checkpointed region ``recompute_stable`` just calls the chooser.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")


class RecomputeMismatchError(RuntimeError):
    """The recomputation asked for choices the forward did not make (different control flow)."""


class _ChoiceLog:
    def __init__(self) -> None:
        self.entries: list[tuple[str, object]] = []
        self.cursor = 0


class _Frames(threading.local):
    def __init__(self) -> None:
        self.stack: list[tuple[str, _ChoiceLog]] = []


_FRAMES = _Frames()


@contextlib.contextmanager
def _frame(mode: str, log: _ChoiceLog) -> Iterator[None]:
    _FRAMES.stack.append((mode, log))
    try:
        yield
    finally:
        _FRAMES.stack.pop()


def choice_log_contexts() -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
    """(forward, recompute) contexts sharing one fresh log: ``torch.utils.checkpoint``'s ``context_fn``."""
    log = _ChoiceLog()
    return _frame("record", log), _frame("replay", log)


def recompute_stable(site: str, choose: Callable[[], T]) -> T:
    """``choose()`` in a forward; the value the forward chose when a checkpoint recomputes.

    ``site`` names the decision (e.g. ``"attention.kernel"``); a recomputation that reaches a
    different site, or more decisions than the forward made, raises
    :class:`RecomputeMismatchError` instead of silently diverging.
    """
    if not _FRAMES.stack:
        return choose()
    mode, log = _FRAMES.stack[-1]
    if mode == "record":
        value = choose()
        log.entries.append((site, value))
        return value
    if log.cursor >= len(log.entries):
        raise RecomputeMismatchError(
            f"recomputation asked for choice #{log.cursor + 1} ({site!r}); the forward made only "
            f"{len(log.entries)}: the checkpointed block's control flow differs between the two runs"
        )
    recorded_site, value = log.entries[log.cursor]
    if recorded_site != site:
        raise RecomputeMismatchError(
            f"recomputation asked for {site!r} where the forward chose {recorded_site!r} "
            f"(choice #{log.cursor + 1}): the checkpointed block's control flow differs"
        )
    log.cursor += 1
    return value  # type: ignore[return-value]
