"""``accord manifest explore`` on a synthetic manifest of a million clips: the server's start
(until its URL is printed, the load included), its first page, a filter, a transcript search and
the what-if counts, answered over HTTP by the real server (``accord manifest explore`` in a
subprocess), and its memory.

Goals (issue #27): first page, a filter, the text search and the what-if counts each under 1 s;
the start in seconds, not minutes (``START_GOAL_S``); the server's memory bounded. ``ratio`` is
goal / the measured time (higher is better; >= 1 meets the goal). The manifest is written
straight as ``CLIP_SCHEMA`` Parquet parts (one per source, as ingest lays them out), vectorised,
in a temp dir.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from accord.core.clip import CLIP_SCHEMA, TRANSCRIPT_TYPE
from accord.core.manifest import MANIFEST_DIR, part_name, source_key
from accord.core.stages import STAGES

ROOT = Path(__file__).resolve().parents[1]
START_GOAL_S = 30.0  # a million clips: loaded while the person opens a browser tab
WORDS = "the river rose over its banks and the whole valley looked silent and white under snow".split()  # noqa: SIM905
LANGS = np.array(["en", "de", "fr", "es", "it", "ja"])


def write_manifest(out: Path, n_clips: int, clips_per_source: int = 1000, seed: int = 0) -> None:
    """``n_clips`` rows of CLIP_SCHEMA in parts of ``clips_per_source`` under ``out/manifest``."""
    rng = np.random.default_rng(seed)
    sentences = pa.array([" ".join(rng.choice(WORDS, size=rng.integers(4, 14))) for _ in range(4096)])
    (out / MANIFEST_DIR).mkdir(parents=True)
    for first in range(0, n_clips, clips_per_source):
        n = min(clips_per_source, n_clips - first)
        uri = f"s3://bench-bucket/source-{first // clips_per_source:06d}.flac"
        start = np.cumsum(rng.uniform(1.0, 12.0, n))
        dur = rng.uniform(0.4, 20.0, n)
        lang = LANGS[rng.integers(0, len(LANGS), n)]
        n_asr = rng.integers(1, 3, n)
        systems = int(n_asr.sum())
        texts = sentences.take(pa.array(rng.integers(0, len(sentences), systems)))
        f32 = lambda lo, hi, n=n: pa.array(rng.uniform(lo, hi, n).astype(np.float32))  # noqa: E731
        nan_f32 = lambda k: pa.array(np.full(k, np.nan, np.float32))  # noqa: E731
        transcripts = pa.StructArray.from_arrays(
            [
                pa.array(np.where(np.arange(systems) % 2 == 0, "faster-whisper", "moonshine")),
                pa.array(["whisper:base"] * systems),
                texts,
                texts,
                pa.array(np.repeat(lang, n_asr)),
                *[nan_f32(systems) for _ in range(6)],  # language_prob .. chars_per_s
                pa.array([[]] * systems, pa.list_(pa.string())),
                pa.array(np.repeat(lang, n_asr)),
                nan_f32(systems),
            ],
            fields=list(TRANSCRIPT_TYPE),
        )
        offsets = pa.array(np.concatenate([[0], np.cumsum(n_asr)]).astype(np.int32))
        cols = {
            "clip_id": pa.array([f"{source_key(uri)[:16]}{i:08d}" for i in range(n)]),
            "source_uri": pa.array([uri] * n),
            "source_sha256": pa.array(["0" * 64] * n),
            "start_s": pa.array(start),
            "end_s": pa.array(start + dur),
            "duration_s": pa.array(dur),
            "source_sample_rate": pa.array(np.full(n, 44100, np.int32)),
            "source_channels": pa.array(np.ones(n, np.int16)),
            "source_duration_s": pa.array(np.full(n, start[-1] + 30.0)),
            "language": pa.array(lang),
            "language_prob": f32(0.4, 1.0),
            "language_check": pa.array(np.where(rng.random(n) < 0.9, "agrees", "unverified")),
            "source_language": pa.array([str(lang[0])] * n),
            "transcripts": pa.ListArray.from_arrays(offsets, transcripts),
            "agreement": pa.array(np.where(n_asr > 1, rng.uniform(0, 1, n), np.nan).astype(np.float32)),
            "n_asr": pa.array(n_asr.astype(np.int16)),
            "hallucinated": pa.array(rng.random(n) < 0.01),
            "speaking_rate": f32(2, 40),
            "loudness_lufs": f32(-40, -15),
            "snr_db": f32(-5, 60),
            "bandwidth_hz": f32(2000, 16000),
            "longest_pause_s": f32(0, 2),
            "leading_silence_s": f32(0, 1.5),
            "trailing_silence_s": f32(0, 1.5),
            "dnsmos_sig": f32(1, 4.5),
            "dnsmos_bak": f32(1, 4.5),
            "dnsmos_ovrl": f32(1, 4.2),
            "dnsmos_p808": f32(1, 4.5),
            "speaker_consistency": f32(0.4, 1.0),
            "speaker_split_sim": f32(0.3, 1.0),
            "speaker_change_s": nan_f32(n),
            **{f"eligible_{s}": pa.array(np.zeros(n, bool)) for s in STAGES},
            "run_id": pa.array(["bench"] * n),
        }
        arrays = [
            cols[f.name] if f.name in cols else pa.nulls(n, f.type) for f in CLIP_SCHEMA
        ]  # pairs, language_scores, asr_failures: null
        table = pa.Table.from_arrays(arrays, schema=CLIP_SCHEMA)
        pq.write_table(table, out / MANIFEST_DIR / part_name(source_key(uri)), compression="zstd")


def _get(url: str) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as r:
        body = r.read()
    return time.perf_counter() - t0, body


def _rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of ``pid`` in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    kb = {k: int(re.search(rf"{k}:\s+(\d+)", status).group(1)) for k in ("VmRSS", "VmHWM")}
    return kb["VmRSS"] / 1024, kb["VmHWM"] / 1024


def measure(out: Path, reps: int = 3) -> dict[str, float]:
    """Start the real server on ``out`` and time what a person's first minute asks of it."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "accord.cli.main", "manifest", "explore", str(out), "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines: list[str] = []
        m = None
        while m is None:  # progress lines, then the URL once the catalog is loaded
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"explorer did not start: {''.join(lines)[-2000:]}")
            lines.append(line)
            m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        base = m.group(1)
        res = {"start_s": time.perf_counter() - t0}
        loaded = re.search(r"loaded in ([\d.]+) s", "".join(lines))
        res["load_s"] = float(loaded.group(1)) if loaded else float("nan")
        th = urllib.parse.quote(json.dumps({"anneal1": {"min_snr_db": 10}}))
        queries = {
            "first_page": "api/clips?size=50",
            "filter": "api/clips?size=50&gate=anneal1:min_dnsmos_ovrl&language=de&min_snr_db=20"
            "&sort=agreement&desc=1",
            "text_search": "api/clips?size=50&text=silent%20and%20white",
            "whatif": f"api/whatif?th={th}",
            "page_html": "",
        }
        for name, q in queries.items():
            times = [_get(base + q)[0] for _ in range(reps)]
            res[f"{name}_first_s"] = times[0]
            res[f"{name}_s"] = statistics.median(times)
        res["rss_mb"], res["peak_rss_mb"] = _rss_mb(proc.pid)
        return res
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run(quick: bool, device: str = "cpu") -> list[dict]:
    if device != "cpu":
        return []
    n = 100_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ingest"
        t0 = time.perf_counter()
        write_manifest(out, n)
        write_s = time.perf_counter() - t0
        r = measure(out)
    note = f"{n} clips in {n // 1000} parts (written in {write_s:.0f} s); over HTTP, median of 3"
    rows = [
        {
            "name": "explore: server start (until the URL is printed)",
            "value": r["start_s"],
            "unit": "s",
            "ratio": START_GOAL_S / r["start_s"],
            "goal": 1.0,
            "note": f"{note}; of which the catalog's load {r['load_s']:.1f} s (DuckDB scans the parts in "
            f"place); ratio = {START_GOAL_S:.0f} s goal / time",
        },
    ]
    for key, label in (
        ("first_page", "first page (50 rows)"),
        ("filter", "filter: failing gate + language + range, sorted"),
        ("text_search", "transcript text search"),
        ("whatif", "what-if counts, every stage x language"),
    ):
        rows.append(
            {
                "name": f"explore: {label}",
                "value": r[f"{key}_s"],
                "unit": "s",
                "ratio": 1.0 / r[f"{key}_s"],
                "goal": 1.0,
                "note": f"first call {r[f'{key}_first_s']:.3f} s; ratio = 1 s goal / time",
            }
        )
    rows.append(
        {
            "name": "explore: server memory after the queries",
            "value": r["rss_mb"],
            "unit": "MiB",
            "note": f"peak {r['peak_rss_mb']:.0f} MiB; DuckDB memory_limit 1GB",
        }
    )
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
