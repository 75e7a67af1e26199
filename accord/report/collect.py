"""Tolerant readers for the report: each returns what it found plus notes on what it could not read.

A report of a half-finished run is still useful, so a missing or damaged file becomes a note in
the report rather than an exception. Expected files (all optional):

- ingest OUT: ``runs/<run_id>.json`` (under ``results``: ``hours_in``, ``hours_clipped``,
  ``hours_kept`` {stage: {lang: h}}, ``errors_by_reason``; ``counts``, ``timings_s``),
  ``manifest/`` (CLIP_SCHEMA Parquet), ``errors/`` (ERROR_SCHEMA Parquet).
- SHARDS: ``index.parquet`` (``n_samples``, ``seconds``, ``n_<stage>``, ``hours_<stage>`` per shard),
  ``samples.parquet``, ``tokenize.json``.
- train RUN: per stage ``<stage>/metrics.jsonl`` (one JSON object per logged step with ``step`` and
  ``loss``; other numeric keys such as ``nll/cb0`` or ``lr/muon`` are kept), or a ``*.csv`` with a
  ``step`` column; mini-eval results in ``<stage>/eval*.json``, ``<stage>/mini_eval*.json`` or
  ``<stage>/eval/*.json`` (numbers such as ``wer`` and ``speaker_similarity``, an optional per-sentence
  ``items`` list of {text, hypothesis, wer}), and their wavs in ``<stage>/eval/*.wav``. A single
  stage's run dir (``metrics.jsonl`` at its top) is read as that one stage.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from accord.core.eligibility import load_thresholds
from accord.core.runs import RUNS_DIR, read_run_records
from accord.core.shards import (
    INDEX_PARQUET,
    SAMPLES_PARQUET,
    TOKENIZE_JSON,
    read_index,
    read_samples,
    read_tokenize_json,
)
from accord.core.stages import STAGES
from accord.core.storage import PARQUET_THREADS

LOSS_KEYS = ("loss", "train/loss", "loss/total", "nll")


def results(record: dict[str, Any]) -> dict[str, Any]:
    """The run record's results block (``accord.core.runs``); flat records are accepted too."""
    res = record.get("results")
    return res if isinstance(res, dict) else record


@dataclass
class IngestData:
    records: list[dict[str, Any]] = field(default_factory=list)
    clips: pa.Table | None = None
    errors: pa.Table | None = None
    thresholds: dict[str, float] = field(default_factory=dict)  # stage -> min agreement
    notes: list[str] = field(default_factory=list)

    @property
    def hours_in(self) -> float | None:
        """Summed over runs: an incremental run only counts the sources it newly committed."""
        vals = [results(r).get("hours_in") for r in self.records]
        vals = [v for v in vals if isinstance(v, int | float)]
        return sum(vals) if vals else None

    def hours_kept(self) -> dict[str, float]:
        """Per stage, from the manifest with eligibility as read now; the run records otherwise."""
        if self.clips is not None and len(self.clips):
            dur = self.clips.column("duration_s").to_pylist()
            out = {}
            for s in STAGES:
                col = f"eligible_{s}"
                if col in self.clips.column_names:
                    flags = self.clips.column(col).to_pylist()
                    out[s] = sum(d for d, f in zip(dur, flags, strict=True) if f and d) / 3600.0
            return out
        out = {}
        for r in self.records:
            for s, langs in (results(r).get("hours_kept") or {}).items():
                if s in STAGES and isinstance(langs, dict):
                    out[s] = out.get(s, 0.0) + sum(v for v in langs.values() if isinstance(v, int | float))
        return out


@dataclass
class ShardsData:
    index: pa.Table | None = None
    samples: pa.Table | None = None
    config: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class StageRun:
    stage: str
    path: Path
    metrics: list[dict[str, float]] = field(default_factory=list)
    evals: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (file name, content)
    eval_audio: list[Path] = field(default_factory=list)
    exported: bool = False

    @property
    def loss_key(self) -> str | None:
        for k in LOSS_KEYS:
            if any(k in r for r in self.metrics):
                return k
        return None


@dataclass
class TrainData:
    stages: list[StageRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _read_parquet_dir(path: Path, what: str, notes: list[str]) -> pa.Table | None:
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else []
    if not files:
        return None
    tables = []
    for f in files:
        try:
            tables.append(pq.read_table(f, use_threads=PARQUET_THREADS))
        except Exception as e:
            notes.append(f"{what}: skipped unreadable {f.name} ({type(e).__name__}: {e})")
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")


def read_ingest(out: Path | None) -> IngestData:
    data = IngestData()
    if out is None:
        data.notes.append("no ingest OUT dir given or found")
        return data
    data.records, problems = read_run_records(str(out))
    data.notes.extend(problems)
    if not data.records:
        data.notes.append(f"no run record in {out / RUNS_DIR}")
    # Eligibility is a read-time decision: re-apply the thresholds in force now when the pipeline is here.
    try:
        from accord.core.manifest import read_errors, read_manifest

        data.clips = read_manifest(str(out)) if (out / "manifest").is_dir() else None
        data.errors = read_errors(str(out)) if (out / "errors").is_dir() else None
    except ImportError as e:
        if (e.name or "").startswith("accord"):
            raise  # our own broken import is a bug, not a missing extra
        data.clips = _read_parquet_dir(out / "manifest", "manifest", data.notes)
        data.errors = _read_parquet_dir(out / "errors", "errors", data.notes)
        data.notes.append(f"pipeline extra missing ({e.name}): eligibility shown as recorded at ingest")
    except Exception as e:  # a damaged manifest still gets a report of the rest
        data.notes.append(f"manifest unreadable through accord.pipeline ({type(e).__name__}: {e}); raw read")
        data.clips = _read_parquet_dir(out / "manifest", "manifest", data.notes)
        data.errors = _read_parquet_dir(out / "errors", "errors", data.notes)
    if data.clips is None:
        data.notes.append(f"no manifest in {out / 'manifest'}")
    elif "duration_s" not in data.clips.column_names:
        data.notes.append("manifest has no duration_s column; not a CLIP_SCHEMA manifest")
        data.clips = None
    data.thresholds = {s: float(t.min_agreement) for s, t in load_thresholds(None).items()}
    return data


def read_shards(path: Path | None) -> ShardsData:
    data = ShardsData()
    if path is None:
        data.notes.append("no SHARDS dir given or found")
        return data
    readers = {"index": (INDEX_PARQUET, read_index), "samples": (SAMPLES_PARQUET, read_samples)}
    for name, (filename, reader) in readers.items():
        if not (path / filename).exists():
            data.notes.append(f"no {filename} in {path}")
            continue
        try:
            setattr(data, name, reader(str(path)))
        except Exception as e:
            data.notes.append(f"{filename} unreadable: {type(e).__name__}: {e}")
    try:
        data.config = read_tokenize_json(str(path)) or {}
    except ValueError as e:
        data.notes.append(f"{TOKENIZE_JSON} unreadable: {e}")
    return data


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, str):
        try:
            x = float(v)
        except ValueError:
            return None
        return x if math.isfinite(x) else None
    return None


def _rows_numeric(rows: list[dict[str, Any]]) -> list[dict[str, float]]:
    by_step: dict[float, dict[str, float]] = {}
    for r in rows:
        step = _num(r.get("step"))
        if step is None:
            continue
        num = {k: x for k, v in r.items() if (x := _num(v)) is not None}
        by_step[step] = num  # a resumed run re-logs steps: the last value wins
    return [by_step[s] for s in sorted(by_step)]


def read_metrics_file(path: Path) -> tuple[list[dict[str, float]], int]:
    """Numeric step rows from a JSONL or CSV file, and how many lines were unreadable."""
    bad = 0
    rows: list[dict[str, Any]] = []
    if path.suffix == ".csv":
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    else:
        for line in path.read_text(errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                bad += 1  # e.g. a line cut short by a killed run
                continue
            if isinstance(obj, dict):
                rows.append(obj)
            else:
                bad += 1
    return _rows_numeric(rows), bad


def _stage_name(d: Path) -> str:
    """A single stage's run dir (``accord train STAGE --run DIR``): its name from config.json when there."""
    try:
        cfg = json.loads((d / "config.json").read_text())
        stage = cfg.get("stage") or (cfg.get("recipe") or {}).get("stage")
        if isinstance(stage, str) and stage:
            return stage
    except (OSError, ValueError, AttributeError):
        pass
    return d.name


def _stage_dirs(run: Path) -> list[tuple[str, Path]]:
    if (run / "metrics.jsonl").exists():
        return [(_stage_name(run), run)]
    out = [(s, run / s) for s in STAGES if (run / s).is_dir()]
    extra = sorted(
        p for p in run.iterdir() if p.is_dir() and p.name not in STAGES and (p / "metrics.jsonl").exists()
    )
    return out + [(p.name, p) for p in extra]


def _metric_files(d: Path) -> list[Path]:
    if (d / "metrics.jsonl").exists():
        return [d / "metrics.jsonl"]
    found = sorted(d.glob("*.jsonl")) + sorted(d.glob("*.csv")) + sorted(d.glob("*/*.jsonl"))
    return [f for f in found if "eval" not in f.name]


def _eval_files(d: Path) -> list[Path]:
    found = {
        *d.glob("eval*.json"),
        *d.glob("mini_eval*.json"),
        *d.glob("eval/*.json"),
        *d.glob("*/eval*.json"),
    }
    return sorted(found)


def read_train(run: Path | None) -> TrainData:
    data = TrainData()
    if run is None:
        data.notes.append("no train RUN dir given or found")
        return data
    for stage, d in _stage_dirs(run):
        sr = StageRun(stage=stage, path=d)
        for f in _metric_files(d):
            rows, bad = read_metrics_file(f)
            sr.metrics.extend(rows)
            if bad:
                data.notes.append(f"{stage}: skipped {bad} unreadable line(s) in {f.name}")
        if not sr.metrics:
            data.notes.append(f"{stage}: no step metrics (expected {d / 'metrics.jsonl'})")
        elif sr.loss_key is None:
            data.notes.append(f"{stage}: metrics have no loss column ({', '.join(LOSS_KEYS)})")
        for f in _eval_files(d):
            try:
                content = json.loads(f.read_text())
            except ValueError as e:
                data.notes.append(f"{stage}: {f.name} unreadable: {e}")
                continue
            if isinstance(content, dict):
                sr.evals.append((f.name, content))
        sr.eval_audio = sorted(d.glob("eval/*.wav"))[:2]
        sr.exported = any(
            (d / sub / "params.json").exists() for sub in ("final", "export", "zonos2", ".")
        ) or any(d.glob("*/params.json"))
        data.stages.append(sr)
    if not data.stages:
        data.notes.append(f"no stage dirs ({', '.join(STAGES)}) in {run}")
    return data
