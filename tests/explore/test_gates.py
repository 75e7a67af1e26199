"""The SQL gates agree with :func:`accord.core.eligibility.failures`, gate by gate, on edge rows."""

from __future__ import annotations

import itertools
import math
from dataclasses import fields, replace

import duckdb
import pyarrow as pa
import pytest

from accord.core.clip import CLIP_SCHEMA
from accord.core.eligibility import DEFAULT_THRESHOLDS, StageThresholds, failures
from accord.core.manifest import to_row
from accord.core.stages import STAGES
from accord.explore.catalog import DERIVED
from accord.explore.gates import BOUNDS, SPECIAL, eligible_sql, failing_sql, gate_sql, literal

F32_BELOW_03 = float(pa.array([0.3], pa.float32()).to_pylist()[0])  # 0.30000001192...: float32 rounding


def edge_rows() -> list[dict]:
    """Rows at and around every default limit, with NaN, None, single-system and off-source cases."""
    values = {
        "agreement": [math.nan, 0.0, 0.29999, F32_BELOW_03, 0.6, 0.8, 0.9, 1.0],
        "n_asr": [None, 0, 1, 2, 3],
        "snr_db": [math.nan, -5.0, 3.0, 14.99, 15.0, 25.0, 60.0],
        "duration_s": [0.2, 0.5, 1.0, 1.5, 2.0, 29.9, 30.0, 31.0],
        "language_prob": [math.nan, 0.5, 0.7, 0.99],
        "dnsmos_ovrl": [math.nan, 2.9, 3.0, 3.5],
        "speaker_consistency": [math.nan, 0.79, 0.8, 1.0],
        "speaker_split_sim": [math.nan, 0.5, 0.65, 0.9],
        "bandwidth_hz": [math.nan, 2999.0, 4000.0, 8000.0],
        "speaking_rate": [math.nan, 1.0, 4.0, 26.0, 41.0],
        "leading_silence_s": [math.nan, 0.0, 0.6, 1.01],
        "trailing_silence_s": [math.nan, 0.61, 1.0],
        "hallucinated": [False, True, None],
        "language_check": ["", "agrees", "differs", "unverified", None],
        "language": ["en", "de", "", None],
        "source_language": ["", "en", None],
    }
    rows = []
    # one column varied at a time around a passing base row, then random-ish combinations
    base = {k: v[-1] if k not in ("language_check", "language") else v[1] for k, v in values.items()}
    base.update(n_asr=2, hallucinated=False, source_language="en", language="en")
    for k, vs in values.items():
        for v in vs:
            rows.append({**base, k: v})
    keys = list(values)
    for i in range(600):
        rows.append({k: values[k][(i * (7 + 3 * j) + j * j) % len(values[k])] for j, k in enumerate(keys)})
    # version-1 rows: no n_asr, the transcripts count instead
    for n in (0, 1, 2):
        rows.append(
            {**base, "n_asr": None, "transcripts": [{"system": f"s{j}", "text": "x"} for j in range(n)]}
        )
    out = []
    for r in rows:
        row = to_row(r)
        for k in ("n_asr", "hallucinated", "language_check", "language", "source_language"):
            row[k] = r.get(k)  # keep the nulls to_row would fill
        if "transcripts" not in r:
            row["transcripts"] = None
        out.append(row)
    return out


def threshold_sets() -> list[dict[str, StageThresholds]]:
    relaxed = {s: replace(DEFAULT_THRESHOLDS[s], min_agreement=0.3) for s in STAGES}
    custom = dict(DEFAULT_THRESHOLDS)
    custom["anneal1"] = replace(custom["anneal1"], languages=("en", "it's"), min_snr_db=math.inf)
    custom["pretrain"] = StageThresholds()  # nothing active
    custom["midtrain"] = replace(custom["midtrain"], max_duration_s=-math.inf, min_agreement=F32_BELOW_03)
    return [DEFAULT_THRESHOLDS, relaxed, custom]


@pytest.fixture(scope="module")
def con():
    c = duckdb.connect()
    rows = edge_rows()
    edge = pa.Table.from_pylist(rows, schema=CLIP_SCHEMA)
    edge = edge.append_column("i", pa.array(range(len(rows)), pa.int64()))
    derived = "".join(f", {sql} AS {name}" for name, sql in DERIVED.items())  # as the catalog loads
    c.execute(f"CREATE TABLE clips AS SELECT *{derived} FROM edge")
    return c, edge.to_pylist()  # the rows as a reader sees them (float32 signals)


def test_every_threshold_has_a_translation() -> None:
    names = {f.name for f in fields(StageThresholds)}
    assert names == set(BOUNDS) | set(SPECIAL), "a threshold without an SQL gate in accord/explore/gates.py"
    assert not set(BOUNDS) & set(SPECIAL)


@pytest.mark.parametrize("which", range(len(threshold_sets())))
def test_sql_gates_agree_with_failures(con, which) -> None:
    c, rows = con
    th = threshold_sets()[which]
    for stage in STAGES:
        t = th[stage]
        got = c.execute(f"SELECT i, {failing_sql(t)}, {eligible_sql(t)} FROM clips ORDER BY i").fetchall()
        assert len(got) == len(rows)
        for (i, fails, ok), row in zip(got, rows, strict=True):
            want = failures(row, t)
            assert fails == want, (stage, i, row)
            assert ok == (not want), (stage, i)


def test_literals_round_trip() -> None:
    c = duckdb.connect()
    for v in (0.1, F32_BELOW_03, 1e-300, 12345.678, math.inf, -math.inf, "it's"):
        got = c.execute(f"SELECT {literal(v)}").fetchone()[0]
        assert got == v
    assert all(
        name for name, _ in itertools.chain.from_iterable(gate_sql(t) for t in DEFAULT_THRESHOLDS.values())
    )
