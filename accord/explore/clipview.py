"""One clip as the clip page shows it: its row, its transcripts with word-level differences
against the first system's, and each signal with every stage's threshold beside it.

Pass or fail per threshold comes from :func:`accord.core.eligibility.failures` on the row (the
owner of eligibility), not from the SQL translation: the page can be checked against it.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from accord.core.clip import json_safe
from accord.core.eligibility import StageThresholds, failures
from accord.core.stages import STAGES
from accord.explore.catalog import CLIP_COLUMNS, Catalog
from accord.explore.gates import NEUTRAL, SIGNAL_OF

BOUNDS_TEXT = {"min": "≥", "max": "≤"}


def clip_row(cat: Catalog, clip_id: str) -> dict[str, Any] | None:
    rows = cat.rows(f"SELECT {CLIP_COLUMNS} FROM clips WHERE clip_id = ? LIMIT 1", [clip_id])
    return rows[0] if rows else None


def word_diff(reference: str, other: str) -> list[tuple[str, str]]:
    """``other`` against ``reference`` word by word: ``(op, words)`` with op ``same``,
    ``ins`` (only in other), ``del`` (only in reference)."""
    a, b = reference.split(), other.split()
    out: list[tuple[str, str]] = []
    norm_a, norm_b = [w.lower().strip(".,;:!?\"'") for w in a], [w.lower().strip(".,;:!?\"'") for w in b]
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, norm_a, norm_b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(("same", " ".join(b[j1:j2])))
            continue
        if i2 > i1:
            out.append(("del", " ".join(a[i1:i2])))
        if j2 > j1:
            out.append(("ins", " ".join(b[j1:j2])))
    return out


def transcripts(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every system's transcript; each after the first carries its diff against the first."""
    ts = list(row.get("transcripts") or [])
    pairs = {(p["a"], p["b"]): p for p in row.get("pairs") or []}
    out = []
    ref = (ts[0].get("text") or "") if ts else ""
    for i, t in enumerate(ts):
        d = dict(t)
        d["diff"] = [("same", t.get("text") or "")] if i == 0 else word_diff(ref, t.get("text") or "")
        if i:
            p = pairs.get((ts[0]["system"], t["system"])) or pairs.get((t["system"], ts[0]["system"]))
            d["wer_vs_first"] = p.get("wer") if p else None
        out.append(d)
    for f in row.get("asr_failures") or []:
        out.append({"system": f["system"], "failed": f"{f['error_type']}: {f['reason']}", "diff": []})
    return json_safe(out)


def threshold_text(name: str, value: Any) -> str:
    """A threshold as a person reads it beside its signal: ``≥ 15``, ``≤ 30``, ``reject``."""
    if name == "languages":
        return "in " + ", ".join(value)
    if isinstance(value, bool):
        return name.split("_", 1)[0]  # reject / require
    kind = name.split("_", 1)[0]
    v = float(value)
    shown = f"{v:g}" if math.isfinite(v) else str(v)
    return f"{BOUNDS_TEXT.get(kind, kind)} {shown}" + (
        " off-source" if name.endswith("off_source_s") or name.endswith("off_source") else ""
    )


def signals(row: Mapping[str, Any], th: Mapping[str, StageThresholds]) -> list[dict[str, Any]]:
    """Rows ``{signal, value, stages: {stage: [{threshold, text, ok}]}}``: each signal the
    thresholds read, its value, and each stage's active thresholds on it with pass/fail."""
    failed = {s: set(failures(row, th[s])) for s in STAGES}
    out: dict[str, dict[str, Any]] = {}
    for f in fields(StageThresholds):
        sig = SIGNAL_OF[f.name]
        entry = out.setdefault(sig, {"signal": sig, "value": row.get(sig), "stages": {s: [] for s in STAGES}})
        for s in STAGES:
            value = getattr(th[s], f.name)
            if value == NEUTRAL[f.name]:
                continue
            entry["stages"][s].append(
                {"threshold": f.name, "text": threshold_text(f.name, value), "ok": f.name not in failed[s]}
            )
    return json_safe(list(out.values()))
