"""Stage thresholds as SQL: the vectorised form of :func:`accord.core.eligibility.failures`.

The explorer re-applies thresholds to a million clips on every change of a slider; calling
``failures`` once per row takes about a minute for that, a DuckDB expression well under a
second. This module is a translation, not a second definition: every gate here mirrors one
line of ``failures`` (same name, same column, same NaN and null handling), and
``tests/explore/test_gates.py`` checks, gate by gate on edge-case rows, that both agree and
that every :class:`~accord.core.eligibility.StageThresholds` field has a translation, so a new
threshold added to eligibility fails the tests until it is translated here.

Comparisons are made in DOUBLE (the Python side compares ``float(float32)`` with a Python
float); DuckDB orders NaN above every number, so each comparison also excludes NaN, and a
NULL (missing) value fails as ``float_or_nan(None)`` does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields

from accord.core.clip import LANGUAGE_AGREES, LANGUAGE_DIFFERS
from accord.core.eligibility import StageThresholds
from accord.core.stages import STAGES

NEUTRAL: dict[str, object] = {f.name: f.default for f in fields(StageThresholds)}

# ``asr_systems``: n_asr, else (a version-1 row) the number of its transcripts, else NaN (NULL).
# The catalog computes it once per clip at load (a column of that name): reading the nested
# transcripts per query made the what-if counts several times slower at a million clips.
N_ASR_SQL = "coalesce(CAST(n_asr AS DOUBLE), CAST(len(transcripts) AS DOUBLE))"
N_ASR = "asr_systems"

# threshold -> (column, ">=" or "<=") for the plain at-least / at-most gates of ``failures``
BOUNDS: dict[str, tuple[str, str]] = {
    "min_dnsmos_ovrl": ("dnsmos_ovrl", ">="),
    "min_speaker_consistency": ("speaker_consistency", ">="),
    "min_speaker_split_sim": ("speaker_split_sim", ">="),
    "min_duration_s": ("duration_s", ">="),
    "max_duration_s": ("duration_s", "<="),
    "min_snr_db": ("snr_db", ">="),
    "min_bandwidth_hz": ("bandwidth_hz", ">="),
    "min_speaking_rate": ("speaking_rate", ">="),
    "max_speaking_rate": ("speaking_rate", "<="),
    "min_language_prob": ("language_prob", ">="),
    "max_leading_silence_s": ("leading_silence_s", "<="),
    "max_trailing_silence_s": ("trailing_silence_s", "<="),
}
# thresholds with their own rule below (the rest of ``failures``)
SPECIAL: tuple[str, ...] = (
    "min_agreement",
    "min_asr_systems",
    "reject_hallucinated",
    "reject_language_mismatch",
    "require_language_agreement",
    "languages",
    "min_language_prob_off_source",
    "min_duration_off_source_s",
)
# which signal column each threshold reads (the clip view shows the threshold beside it)
SIGNAL_OF: dict[str, str] = {
    **{name: col for name, (col, _) in BOUNDS.items()},
    "min_agreement": "agreement",
    "min_asr_systems": "n_asr",
    "reject_hallucinated": "hallucinated",
    "reject_language_mismatch": "language_check",
    "require_language_agreement": "language_check",
    "languages": "language",
    "min_language_prob_off_source": "language_prob",
    "min_duration_off_source_s": "duration_s",
}


def literal(value: float | str) -> str:
    """A SQL literal for a threshold value: floats round-trip (``repr``), strings are quoted."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    v = float(value)
    if math.isnan(v):
        return "'nan'::DOUBLE"
    if math.isinf(v):
        return "'inf'::DOUBLE" if v > 0 else "'-inf'::DOUBLE"
    return f"{v!r}::DOUBLE"


def passes(value_sql: str, op: str, limit: float) -> str:
    """``value op limit`` as the Python side reads it: NaN and NULL never pass."""
    return f"coalesce(({value_sql}) {op} {literal(limit)} AND NOT isnan({value_sql}), false)"


def column(name: str) -> str:
    return f"CAST({name} AS DOUBLE)"


def gate_sql(t: StageThresholds) -> list[tuple[str, str]]:
    """``(threshold, SQL that is TRUE when a clip fails it)`` for every active threshold of one
    stage, in the order :func:`~accord.core.eligibility.failures` lists them."""
    out: list[tuple[str, str]] = []

    def bound(name: str) -> None:
        col, op = BOUNDS[name]
        limit = getattr(t, name)
        active = limit > NEUTRAL[name] if op == ">=" else limit < NEUTRAL[name]
        if active:
            out.append((name, f"NOT {passes(column(col), op, limit)}"))

    if t.min_agreement > NEUTRAL["min_agreement"]:
        multi = f"NOT coalesce({N_ASR} < 2, false)"  # NaN n_asr: not single-system
        out.append(
            ("min_agreement", f"({multi} AND NOT {passes(column('agreement'), '>=', t.min_agreement)})")
        )
    if t.min_asr_systems > NEUTRAL["min_asr_systems"]:
        out.append(("min_asr_systems", f"NOT {passes(N_ASR, '>=', t.min_asr_systems)}"))
    if t.reject_hallucinated:
        out.append(("reject_hallucinated", "coalesce(hallucinated, false)"))
    if t.reject_language_mismatch:
        out.append(
            ("reject_language_mismatch", f"coalesce(language_check = {literal(LANGUAGE_DIFFERS)}, false)")
        )
    if t.require_language_agreement:
        out.append(
            (
                "require_language_agreement",
                f"NOT coalesce(language_check = {literal(LANGUAGE_AGREES)}, false)",
            )
        )
    for name in ("min_dnsmos_ovrl", "min_speaker_consistency", "min_speaker_split_sim"):
        bound(name)
    for name in ("min_duration_s", "max_duration_s", "min_snr_db", "min_bandwidth_hz"):
        bound(name)
    for name in ("min_speaking_rate", "max_speaking_rate", "min_language_prob"):
        bound(name)
    for name in ("max_leading_silence_s", "max_trailing_silence_s"):
        bound(name)
    if t.languages:
        allowed = ", ".join(literal(x) for x in t.languages)
        out.append(("languages", f"coalesce(language, '') NOT IN ({allowed})"))
    off_source = "(coalesce(source_language, '') <> '' AND coalesce(language, '') <> source_language)"
    if t.min_language_prob_off_source > NEUTRAL["min_language_prob_off_source"]:
        ok = passes(column("language_prob"), ">=", t.min_language_prob_off_source)
        out.append(("min_language_prob_off_source", f"({off_source} AND NOT {ok})"))
    if t.min_duration_off_source_s > NEUTRAL["min_duration_off_source_s"]:
        ok = passes(column("duration_s"), ">=", t.min_duration_off_source_s)
        out.append(("min_duration_off_source_s", f"({off_source} AND NOT {ok})"))
    return out


def eligible_sql(t: StageThresholds) -> str:
    """SQL that is TRUE when a clip passes every active threshold of one stage."""
    gates = gate_sql(t)
    return "NOT (" + " OR ".join(f"({sql})" for _, sql in gates) + ")" if gates else "true"


def failing_sql(t: StageThresholds) -> str:
    """SQL for the list of threshold names a clip fails at one stage (empty when eligible)."""
    gates = gate_sql(t)
    if not gates:
        return "[]::VARCHAR[]"
    items = ", ".join(f"CASE WHEN {sql} THEN {literal(name)} END" for name, sql in gates)
    return f"list_filter([{items}], lambda x: x IS NOT NULL)"


def all_gates(thresholds: Mapping[str, StageThresholds]) -> dict[str, list[str]]:
    """``{stage: [active threshold names]}``: the gates a clip can fail, per stage."""
    return {s: [name for name, _ in gate_sql(thresholds[s])] for s in STAGES}
