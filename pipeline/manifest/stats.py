"""Summaries of a clip table: hours and clips per stage and language, agreement histograms,
what each stage gate removes, and the quality signals' distributions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from accord.core.eligibility import StageThresholds, failures, load_thresholds
from accord.core.stages import STAGES

AGREEMENT_BINS: tuple[float, ...] = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))
# The per-clip signals whose distributions stats and plots show: column -> histogram bin edges.
SIGNAL_BINS: dict[str, tuple[float, ...]] = {
    "dnsmos_ovrl": tuple(np.round(np.linspace(1.0, 5.0, 17), 2)),
    "speaker_consistency": tuple(np.round(np.linspace(0.0, 1.0, 21), 2)),
    "speaker_split_sim": tuple(np.round(np.linspace(0.0, 1.0, 21), 2)),
    "language_prob": AGREEMENT_BINS,
}


def gate_counts(
    table: pa.Table,
    thresholds: dict[str, StageThresholds] | None = None,
    stages: tuple[str, ...] = STAGES,
) -> dict[str, dict[str, dict[str, int]]]:
    """``{stage: {threshold: {"failed": n, "only": m}}}``: clips failing each gate of a stage,
    and those it alone removes (they pass every other gate), largest first."""
    th = thresholds or load_thresholds()
    rows = table.drop_columns([c for c in table.column_names if c.startswith("eligible_")]).to_pylist()
    out: dict[str, dict[str, dict[str, int]]] = {}
    for stage in stages:
        counts: dict[str, dict[str, int]] = {}
        for row in rows:
            failed = failures(row, th[stage])
            for name in failed:
                c = counts.setdefault(name, {"failed": 0, "only": 0})
                c["failed"] += 1
                c["only"] += len(failed) == 1
        out[stage] = dict(sorted(counts.items(), key=lambda kv: (-kv[1]["failed"], kv[0])))
    return out


def signal_summary(table: pa.Table) -> dict[str, dict[str, Any]]:
    """Per signal column: clips measured (not NaN), quartiles, histogram over ``SIGNAL_BINS``;
    plus ``n_asr`` counts and how many clips are ``hallucinated``."""
    out: dict[str, dict[str, Any]] = {}
    for col, bins in SIGNAL_BINS.items():
        if col not in table.column_names:
            continue
        x = np.asarray(table.column(col).to_numpy(zero_copy_only=False), dtype=float)
        x = x[np.isfinite(x)]
        q = np.percentile(x, [25, 50, 75]).round(3).tolist() if len(x) else []
        out[col] = {"measured": len(x), "quartiles": q, "bins": list(bins),
                    "counts": np.histogram(x, bins=np.asarray(bins))[0].tolist()}  # fmt: skip
    if "n_asr" in table.column_names:
        n = [-1 if v is None else int(v) for v in table.column("n_asr").to_pylist()]
        out["n_asr"] = {str(k if k >= 0 else "?"): n.count(k) for k in sorted(set(n))}
    if "hallucinated" in table.column_names:
        out["hallucinated"] = {"clips": sum(bool(v) for v in table.column("hallucinated").to_pylist())}
    return out


@dataclass
class StageLangRow:
    stage: str  # "all" for every clip
    language: str
    clips: int
    hours: float


def per_stage_language(table: pa.Table) -> list[StageLangRow]:
    """Clips and hours for ``all`` and each stage, per language (plus an ``*`` total per stage)."""
    if not len(table):
        return []
    df = table.select(["language", "duration_s", *[f"eligible_{s}" for s in STAGES]]).to_pandas()
    df["language"] = df["language"].fillna("").replace("", "?")
    out: list[StageLangRow] = []
    for stage in ("all", *STAGES):
        sub = df if stage == "all" else df[df[f"eligible_{stage}"].fillna(False).astype(bool)]
        for lang, g in sorted(sub.groupby("language"), key=lambda kv: kv[0]):
            out.append(StageLangRow(stage, lang, len(g), float(g["duration_s"].sum()) / 3600))
        out.append(StageLangRow(stage, "*", len(sub), float(sub["duration_s"].sum()) / 3600))
    return out


def agreement_histogram(table: pa.Table, bins: tuple[float, ...] = AGREEMENT_BINS) -> dict[str, list[int]]:
    """Counts of clips per agreement bin, per language (and ``*`` for all). Single-system clips
    (agreement NaN: one capable system) have no agreement and are not counted (``n_asr`` is)."""
    if not len(table):
        return {}
    df = table.select(["language", "agreement"]).to_pandas()
    df["language"] = df["language"].fillna("").replace("", "?")
    out = {}
    for lang, g in [("*", df), *sorted(df.groupby("language"), key=lambda kv: kv[0])]:
        a = g["agreement"].astype(float).dropna().to_numpy()
        out[lang] = np.histogram(a, bins=np.asarray(bins))[0].tolist()
    return out


def disagreeing(table: pa.Table, below: float = 0.8, limit: int = 20) -> list[dict[str, Any]]:
    """Clips whose agreement is below ``below``, worst first, with every transcript."""
    if not len(table):
        return []
    rows = [
        r
        for r in table.to_pylist()
        if (r["agreement"] if r["agreement"] is not None else 0.0) < below and not _single_system(r)
    ]
    rows.sort(key=lambda r: (r["agreement"] if r["agreement"] is not None else -1.0, r["clip_id"]))
    return rows[:limit]


def _single_system(row: dict[str, Any]) -> bool:
    """One capable system transcribed the clip: nothing to disagree with (agreement NaN)."""
    n = row.get("n_asr")
    return n is not None and n < 2 and (row.get("agreement") is None or row["agreement"] != row["agreement"])


def summary_dict(
    table: pa.Table,
    errors: pa.Table | None = None,
    gates: dict[str, dict[str, dict[str, int]]] | None = None,
) -> dict[str, Any]:
    """JSON-ready summary (the run record and ``manifest stats --json`` use it); ``gates``:
    :func:`gate_counts` of the table the stage filter was applied to."""
    rows = per_stage_language(table)
    out: dict[str, Any] = {
        "clips": len(table),
        "hours": float(sum(r.hours for r in rows if r.stage == "all" and r.language == "*")),
        "by_stage_language": {
            s: {r.language: {"clips": r.clips, "hours": round(r.hours, 6)} for r in rows if r.stage == s}
            for s in ("all", *STAGES)
        },
        "agreement_histogram": {"bins": list(AGREEMENT_BINS), "counts": agreement_histogram(table)},
        "signals": signal_summary(table),
    }
    if gates is not None:
        out["gates"] = gates
    if errors is not None:
        out["errors_by_reason"] = errors_by_reason(errors)
    return out


def errors_by_reason(errors: pa.Table) -> dict[str, int]:
    if not len(errors):
        return {}
    df = errors.select(["step", "error_type"]).to_pandas()
    counts = df.groupby(["step", "error_type"]).size()
    return {f"{step}:{etype}": int(n) for (step, etype), n in sorted(counts.items())}
