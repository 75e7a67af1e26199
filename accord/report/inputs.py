"""Where a report's inputs are: explicit paths, or found inside one run directory.

``accord report RUN_DIR`` looks for the usual layout of ``make demo`` (any part may be missing)::

    RUN_DIR/ingest/   an ingest OUT dir: manifest/, errors/, runs/<run_id>.json
    RUN_DIR/shards/   a SHARDS dir: index.parquet, samples.parquet, tokenize.json, shards/
    RUN_DIR/train/    a train RUN dir: <stage>/metrics.jsonl (+ eval*.json, summary.png) per stage
    RUN_DIR/synth.wav (or RUN_DIR/synth/*.wav): synthesized audio

``--ingest/--shards/--train/--synth`` override each part. RUN_DIR itself may also be one of the
three dirs (e.g. an ingest OUT dir).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from accord.core.runs import RUNS_DIR
from accord.core.shards import INDEX_PARQUET, SAMPLES_PARQUET, TOKENIZE_JSON
from accord.core.stages import STAGES

INGEST_NAMES = ("ingest", "out", "ingest-out", "manifest")
SHARDS_NAMES = ("shards", "SHARDS", "tokenize")
TRAIN_NAMES = ("train", "run", "runs", "RUN")
MAX_AUDIO = 8


@dataclass
class ReportInputs:
    ingest: Path | None = None
    shards: Path | None = None
    train: Path | None = None
    synth: list[Path] = field(default_factory=list)
    run_dir: Path | None = None

    def describe(self) -> dict[str, str]:
        return {
            "run dir": str(self.run_dir or "-"),
            "ingest OUT": str(self.ingest or "not found"),
            "SHARDS": str(self.shards or "not found"),
            "train RUN": str(self.train or "not found"),
            "synth audio": ", ".join(str(p) for p in self.synth) or "not found",
        }


def is_ingest_dir(p: Path) -> bool:
    return p.is_dir() and ((p / "manifest").is_dir() or (p / RUNS_DIR).is_dir())


def is_shards_dir(p: Path) -> bool:
    return p.is_dir() and any((p / n).exists() for n in (INDEX_PARQUET, SAMPLES_PARQUET, TOKENIZE_JSON))


def is_train_dir(p: Path) -> bool:
    """A curriculum run dir (one subdir per stage) or one stage's run dir (metrics.jsonl at the top)."""
    return p.is_dir() and (any((p / s).is_dir() for s in STAGES) or (p / "metrics.jsonl").exists())


def _first(run_dir: Path, names: tuple[str, ...], test) -> Path | None:
    if test(run_dir):
        return run_dir
    for name in names:
        if test(run_dir / name):
            return run_dir / name
    for child in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        if test(child):
            return child
    return None


def _wavs(run_dir: Path) -> list[Path]:
    found = sorted(run_dir.glob("*.wav")) + sorted((run_dir / "synth").glob("*.wav"))
    return found[:MAX_AUDIO]


def discover(
    run_dir: Path | None,
    ingest: Path | None = None,
    shards: Path | None = None,
    train: Path | None = None,
    synth: list[Path] | tuple[Path, ...] = (),
) -> ReportInputs:
    """Explicit paths win; the rest is looked up in ``run_dir``. Explicit paths must exist."""
    for name, p in (("ingest", ingest), ("shards", shards), ("train", train), *(("synth", s) for s in synth)):
        if p is not None and not Path(p).exists():
            raise FileNotFoundError(f"--{name} {p}: no such file or directory")
    if run_dir is not None and not run_dir.is_dir():
        raise FileNotFoundError(f"RUN_DIR {run_dir}: not a directory")
    out = ReportInputs(run_dir=run_dir)
    out.ingest = (
        Path(ingest) if ingest else (_first(run_dir, INGEST_NAMES, is_ingest_dir) if run_dir else None)
    )
    out.shards = (
        Path(shards) if shards else (_first(run_dir, SHARDS_NAMES, is_shards_dir) if run_dir else None)
    )
    out.train = Path(train) if train else (_first(run_dir, TRAIN_NAMES, is_train_dir) if run_dir else None)
    out.synth = [Path(s) for s in synth] if synth else (_wavs(run_dir) if run_dir else [])
    return out
