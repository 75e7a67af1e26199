"""The four training stages, in curriculum order.

Ingest records eligibility per stage, tokenize filters by a minimum stage, and the
trainer reads one stage at a time. Later stages are stricter, so a clip eligible for
``anneal2`` is eligible for every earlier stage when thresholds are monotone.
"""

from __future__ import annotations

STAGES: tuple[str, ...] = ("pretrain", "midtrain", "anneal1", "anneal2")


def stage_index(stage: str) -> int:
    """Position of ``stage`` in the curriculum; a clear error for an unknown name."""
    try:
        return STAGES.index(stage)
    except ValueError:
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}") from None


def stages_from(min_stage: str) -> tuple[str, ...]:
    """``min_stage`` and every stricter stage after it."""
    return STAGES[stage_index(min_stage) :]
