"""Summaries of a clip table: hours and clips per stage and language, agreement histograms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from accord.core.stages import STAGES

AGREEMENT_BINS: tuple[float, ...] = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))


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
    """Counts of clips per agreement bin, per language (and ``*`` for all)."""
    if not len(table):
        return {}
    df = table.select(["language", "agreement"]).to_pandas()
    df["language"] = df["language"].fillna("").replace("", "?")
    out = {}
    for lang, g in [("*", df), *sorted(df.groupby("language"), key=lambda kv: kv[0])]:
        a = g["agreement"].astype(float).fillna(0.0).to_numpy()
        out[lang] = np.histogram(a, bins=np.asarray(bins))[0].tolist()
    return out


def disagreeing(table: pa.Table, below: float = 0.8, limit: int = 20) -> list[dict[str, Any]]:
    """Clips whose agreement is below ``below``, worst first, with every transcript."""
    if not len(table):
        return []
    rows = [r for r in table.to_pylist() if (r["agreement"] if r["agreement"] is not None else 0.0) < below]
    rows.sort(key=lambda r: (r["agreement"] if r["agreement"] is not None else -1.0, r["clip_id"]))
    return rows[:limit]


def summary_dict(table: pa.Table, errors: pa.Table | None = None) -> dict[str, Any]:
    """JSON-ready summary (the run record and ``manifest stats --json`` use it)."""
    rows = per_stage_language(table)
    out: dict[str, Any] = {
        "clips": len(table),
        "hours": float(sum(r.hours for r in rows if r.stage == "all" and r.language == "*")),
        "by_stage_language": {
            s: {r.language: {"clips": r.clips, "hours": round(r.hours, 6)} for r in rows if r.stage == s}
            for s in ("all", *STAGES)
        },
        "agreement_histogram": {"bins": list(AGREEMENT_BINS), "counts": agreement_histogram(table)},
    }
    if errors is not None:
        out["errors_by_reason"] = errors_by_reason(errors)
    return out


def errors_by_reason(errors: pa.Table) -> dict[str, int]:
    if not len(errors):
        return {}
    df = errors.select(["step", "error_type"]).to_pandas()
    counts = df.groupby(["step", "error_type"]).size()
    return {f"{step}:{etype}": int(n) for (step, etype), n in sorted(counts.items())}
