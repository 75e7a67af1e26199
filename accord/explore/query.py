"""What the page asks for (:class:`View`) as SQL over :class:`~accord.explore.catalog.Catalog`:
filters, sort and one page of clips, the selection's totals, and what-if counts per stage.

Everything runs in DuckDB; a page holds ``size`` rows, never the manifest. Values from the
page are bound as parameters; column names come from fixed lists (``NUMERIC``, ``SORTABLE``),
threshold values through :func:`accord.explore.gates.literal`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from accord.core.eligibility import StageThresholds, load_thresholds
from accord.core.errors import UserError
from accord.core.stages import STAGES
from accord.explore.catalog import Catalog
from accord.explore.gates import eligible_sql, failing_sql, gate_sql

# Numeric signals a range filter or a sort may name (CLIP_SCHEMA columns).
NUMERIC: tuple[str, ...] = (
    "duration_s", "language_prob", "n_asr", "agreement", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak",
    "dnsmos_p808", "snr_db", "speaker_consistency", "speaker_split_sim", "speaking_rate",
    "bandwidth_hz", "loudness_lufs", "leading_silence_s", "trailing_silence_s", "longest_pause_s",
    "start_s",
)  # fmt: skip
SORTABLE: tuple[str, ...] = ("source_uri", "clip_id", "language", *NUMERIC)
TABLE_COLUMNS: tuple[str, ...] = (
    "clip_id", "source_uri", "start_s", "end_s", "duration_s", "language", "language_prob", "n_asr",
    "agreement", "dnsmos_ovrl", "snr_db", "speaker_consistency",
)  # fmt: skip
MAX_PAGE = 500


class BadRequestError(UserError):
    """A query parameter the explorer cannot read (answered 400 with this line)."""


def thresholds_from(param: str | None, base: Mapping[str, StageThresholds]) -> dict[str, StageThresholds]:
    """The page's thresholds: ``param`` is JSON overrides of the defaults (the export's shape,
    :func:`accord.core.eligibility.threshold_overrides`); absent means ``base``."""
    if not param:
        return dict(base)
    try:
        overrides = json.loads(param)
    except json.JSONDecodeError as e:
        raise BadRequestError(f"th: not JSON ({e})") from None
    return load_thresholds(overrides, path="th")


@dataclass
class View:
    """Filters, sort and page of the clip table, as the page's query string spells them."""

    stage: str | None = None  # with ``eligible``: clips (not) eligible for this stage
    eligible: bool = True
    gate: tuple[str, str] | None = None  # (stage, threshold): clips failing it
    changed: tuple[str, str] | None = None  # (stage, "added" | "removed") against the baseline
    language: str | None = None
    source: str | None = None  # substring of source_uri
    text: str | None = None  # substring of any transcript, case-insensitive
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    sort: str = "source_uri"
    desc: bool = False
    page: int = 0
    size: int = 50

    @classmethod
    def from_params(cls, q: Mapping[str, str]) -> View:
        v = cls()
        if q.get("stage"):
            v.stage = _stage(q["stage"], "stage")
            v.eligible = q.get("eligible", "yes") != "no"
        if q.get("gate"):
            stage, _, name = q["gate"].partition(":")
            v.gate = (_stage(stage, "gate"), name)
        if q.get("changed"):
            stage, _, how = q["changed"].partition(":")
            if how not in ("added", "removed"):
                raise BadRequestError(
                    f"changed: expected <stage>:added or <stage>:removed, got {q['changed']!r}"
                )
            v.changed = (_stage(stage, "changed"), how)
        v.language = q.get("language") or None
        v.source = q.get("source") or None
        v.text = (q.get("text") or "").strip().lower() or None
        for col in NUMERIC:
            lo, hi = _num(q.get(f"min_{col}"), -math.inf), _num(q.get(f"max_{col}"), math.inf)
            if lo != -math.inf or hi != math.inf:
                v.ranges[col] = (lo, hi)
        v.sort = q.get("sort") or "source_uri"
        if v.sort not in SORTABLE:
            raise BadRequestError(f"sort: unknown column {v.sort!r}; one of {', '.join(SORTABLE)}")
        v.desc = q.get("desc") in ("1", "true", "yes")
        v.page = max(0, int(_num(q.get("page"), 0)))
        v.size = min(MAX_PAGE, max(1, int(_num(q.get("size"), 50))))
        return v

    def where(
        self,
        th: Mapping[str, StageThresholds],
        base: Mapping[str, StageThresholds],
        eligible: Callable[[str, StageThresholds], str] = lambda stage, t: eligible_sql(t),
    ) -> tuple[str, list[Any]]:
        """The WHERE clause (``true`` when nothing is filtered) and its parameters; ``eligible``
        spells a stage's eligibility (:meth:`Catalog.eligible`: a column computed at load)."""
        conds: list[str] = []
        params: list[Any] = []
        if self.stage:
            ok = eligible(self.stage, th[self.stage])
            conds.append(ok if self.eligible else f"NOT ({ok})")
        if self.gate:
            stage, name = self.gate
            sql = dict(gate_sql(th[stage])).get(name)
            if sql is None:
                raise BadRequestError(f"gate: {name!r} is not an active threshold of {stage}")
            conds.append(sql)
        if self.changed:
            stage, how = self.changed
            new, old = eligible(stage, th[stage]), eligible(stage, base[stage])
            conds.append(f"({new}) AND NOT ({old})" if how == "added" else f"({old}) AND NOT ({new})")
        if self.language is not None:
            conds.append("coalesce(language, '') = ?")
            params.append("" if self.language == "-" else self.language)
        if self.source:
            conds.append("contains(source_uri, ?)")
            params.append(self.source)
        if self.text:
            conds.append("contains(text_lc, ?)")  # precomputed at load (catalog.DERIVED)
            params.append(self.text)
        for col, (lo, hi) in self.ranges.items():
            conds.append(f"(CAST({col} AS DOUBLE) BETWEEN ? AND ? AND NOT isnan(CAST({col} AS DOUBLE)))")
            params += [lo, hi]
        return (" AND ".join(f"({c})" for c in conds) or "true"), params

    def order(self) -> str:
        col, way = self.sort, "DESC" if self.desc else "ASC"
        missing = f"({col} IS NULL OR isnan(CAST({col} AS DOUBLE)))" if col in NUMERIC else f"{col} IS NULL"
        return f"{missing}, {col} {way}, source_uri, start_s, clip_id"


def _stage(name: str, what: str) -> str:
    if name not in STAGES:
        raise BadRequestError(f"{what}: unknown stage {name!r}; one of {', '.join(STAGES)}")
    return name


def _num(s: str | None, default: float) -> float:
    if s is None or s == "":
        return default
    try:
        return float(s)
    except ValueError:
        raise BadRequestError(f"expected a number, got {s!r}") from None


def page(
    cat: Catalog, view: View, th: Mapping[str, StageThresholds], base: Mapping[str, StageThresholds]
) -> dict[str, Any]:
    """One page of the selection (``TABLE_COLUMNS``, per-stage eligibility and failing gates, a
    transcript preview) and its totals (clips, hours)."""
    where, params = view.where(th, base, cat.eligible)
    total = cat.rows(
        f"SELECT count(*) AS n, coalesce(sum(duration_s), 0) / 3600 AS h FROM clips WHERE {where}", params
    )[0]
    per_stage = ", ".join(
        f"{cat.eligible(s, th[s])} AS ok_{s}, {failing_sql(th[s])} AS fail_{s}" for s in STAGES
    )
    cols = ", ".join(TABLE_COLUMNS)
    sql = (
        f"SELECT {cols}, transcripts[1].text AS preview, {per_stage} FROM "
        f"(SELECT * FROM clips WHERE {where} ORDER BY {view.order()} LIMIT {view.size} "
        f"OFFSET {view.page * view.size}) ORDER BY {view.order()}"
    )
    rows = cat.rows(sql, params)
    for r in rows:
        r["eligible"] = {s: bool(r.pop(f"ok_{s}")) for s in STAGES}
        r["failing"] = {s: list(r.pop(f"fail_{s}") or []) for s in STAGES}
    return {
        "total": int(total["n"]),
        "hours": float(total["h"]),
        "page": view.page,
        "size": view.size,
        "rows": rows,
    }


def selection_ids(
    cat: Catalog, view: View, th: Mapping[str, StageThresholds], base: Mapping[str, StageThresholds]
) -> Iterator[dict[str, Any]]:
    """Every clip of the selection (id, source, span), in the view's order, streamed in batches."""
    where, params = view.where(th, base, cat.eligible)
    cur = cat.con.cursor()
    try:
        res = cur.execute(
            f"SELECT clip_id, source_uri, start_s, end_s, language, duration_s FROM clips WHERE {where} "
            f"ORDER BY {view.order()}",
            params,
        )
        names = [d[0] for d in res.description]
        while batch := res.fetchmany(10_000):
            for r in batch:
                yield dict(zip(names, r, strict=True))
    finally:
        cur.close()


def whatif(
    cat: Catalog, th: Mapping[str, StageThresholds], base: Mapping[str, StageThresholds]
) -> dict[str, Any]:
    """Per stage and language: clips and hours kept under ``th`` and under ``base``, and the
    clips the change adds and removes (the whole manifest, whatever the filters)."""
    # each stage's eligibility computed once per row, then aggregated; under the thresholds the
    # server started from (most stages, on any one change) it is a column computed at load
    flags = ", ".join(
        f"({cat.eligible(s, th[s])}) AS new_{s}"
        + ("" if th[s] == base[s] else f", ({cat.eligible(s, base[s])}) AS old_{s}")
        for s in STAGES
    )
    parts = []
    for s in STAGES:
        new, old = f"new_{s}", f"new_{s}" if th[s] == base[s] else f"old_{s}"
        parts += [
            f"count(*) FILTER (WHERE {new}) AS {s}_clips",
            f"coalesce(sum(duration_s) FILTER (WHERE {new}), 0) / 3600 AS {s}_hours",
            f"count(*) FILTER (WHERE {old}) AS {s}_base_clips",
            f"coalesce(sum(duration_s) FILTER (WHERE {old}), 0) / 3600 AS {s}_base_hours",
            f"count(*) FILTER (WHERE {new} AND NOT {old}) AS {s}_added",
            f"count(*) FILTER (WHERE {old} AND NOT {new}) AS {s}_removed",
        ]
    rows = cat.rows(
        f"SELECT language, {', '.join(parts)} FROM "
        f"(SELECT coalesce(language, '') AS language, duration_s, {flags} FROM clips) GROUP BY 1 ORDER BY 1"
    )
    out: dict[str, Any] = {s: {"languages": {}, "added": 0, "removed": 0} for s in STAGES}
    for r in rows:
        for s in STAGES:
            out[s]["languages"][r["language"] or "-"] = {
                "clips": r[f"{s}_clips"],
                "hours": r[f"{s}_hours"],
                "base_clips": r[f"{s}_base_clips"],
                "base_hours": r[f"{s}_base_hours"],
            }
            out[s]["added"] += r[f"{s}_added"]
            out[s]["removed"] += r[f"{s}_removed"]
    for s in STAGES:
        langs = out[s]["languages"].values()
        out[s]["clips"] = sum(v["clips"] for v in langs)
        out[s]["hours"] = sum(v["hours"] for v in langs)
        out[s]["base_clips"] = sum(v["base_clips"] for v in langs)
        out[s]["base_hours"] = sum(v["base_hours"] for v in langs)
    return out


def facets(cat: Catalog) -> dict[str, Any]:
    """What the filter menus offer: languages with their clip counts, and the signals' ranges."""
    langs = cat.rows(
        "SELECT coalesce(language, '') AS language, count(*) AS n FROM clips GROUP BY 1 ORDER BY 2 DESC"
    )
    return {"languages": [(r["language"] or "-", r["n"]) for r in langs]}
