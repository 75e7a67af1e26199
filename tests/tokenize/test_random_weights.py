"""Missing model weights fail closed; random weights only on an explicit opt-in, and recorded.

A tokenize run without trained DAC / VoxCeleb ECAPA weights must refuse (with the how-to) before
it writes or removes anything; ``--allow-random-weights`` or a ``<kind>:random`` reference runs
the architectures with seeded random weights and records them as ``random_weights`` in
``tokenize.json`` and in every index row.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from accord.cli.main import cli
from accord.core.shards import RANDOM_WEIGHTS_KEY, tokenize_refs
from accord.tokenize.sample_manifest import rows_from_bucket, write_manifest

pytestmark = pytest.mark.integration


@pytest.fixture
def no_models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A machine where no trained DAC or VoxCeleb ECAPA resolves (as on production images without
    the model mount)."""
    empty = tmp_path / "models"
    empty.mkdir()
    monkeypatch.setenv("ACCORD_MODELS", str(empty))


@pytest.fixture(scope="module")
def manifest(sample_bucket, tmp_path_factory) -> Path:
    """One short clip: enough to load, encode and write one shard."""
    rows = rows_from_bucket(sample_bucket, files=["en_espeak_us.wav"], per_file=1, max_seconds=0.5)
    return write_manifest(rows, tmp_path_factory.mktemp("opt_in") / "ingest")


def _tokenize(manifest: Path, out: Path, *opts: str):
    return CliRunner().invoke(
        cli, ["tokenize", str(manifest), "--out", str(out), "--local", "--no-reapply", *opts]
    )


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_missing_codec_weights_refuse_and_touch_nothing(no_models, manifest, tmp_path) -> None:
    out = tmp_path / "shards"
    (out / "shards").mkdir(parents=True)
    for name in ("shard-000007.tar", "shard-000007.done"):  # a finished shard of an earlier, larger plan
        (out / "shards" / name).write_bytes(b"kept")
    before = _files(out)
    r = _tokenize(manifest, out, "--speaker", "ecapa:auralis")
    assert r.exit_code != 0
    assert "$ACCORD_MODELS/dac-44khz/weights.pth" in r.output, r.output  # how to provide it
    assert "--allow-random-weights" in r.output and "'dac:random'" in r.output  # how to opt in
    assert _files(out) == before, "a refused run writes nothing and removes nothing"


def test_missing_speaker_weights_refuse_like_the_codec(no_models, manifest, tmp_path) -> None:
    out = tmp_path / "shards"
    r = _tokenize(manifest, out, "--codec", "dac:random")  # default speaker: ecapa:voxceleb
    assert r.exit_code != 0
    assert "$ACCORD_MODELS/ecapa-voxceleb" in r.output and "'ecapa:random'" in r.output, r.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("opts", "recorded"),
    [
        (["--allow-random-weights"], ["dac:random", "ecapa:random"]),
        (["--codec", "dac:random", "--speaker", "ecapa:auralis"], ["dac:random"]),
    ],
    ids=["flag", "explicit-ref"],
)
def test_opt_in_runs_and_is_recorded(no_models, manifest, tmp_path, opts, recorded) -> None:
    out = tmp_path / "shards"
    r = _tokenize(manifest, out, *opts)
    assert r.exit_code == 0, r.output
    meta = json.loads((out / "tokenize.json").read_text())
    assert meta[RANDOM_WEIGHTS_KEY] == recorded
    assert meta["codec"]["ref"] == "dac:random", "the recorded ref reproduces the weights used"
    index = pq.read_table(out / "index.parquet")
    assert index.num_rows == 1 and index[RANDOM_WEIGHTS_KEY].to_pylist() == [recorded]
    assert tokenize_refs(str(out))[RANDOM_WEIGHTS_KEY] == recorded


def test_ingest_refuses_before_ingesting(no_models, tmp_path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "ingest"
    raw.mkdir()
    r = CliRunner().invoke(cli, ["ingest", str(raw), "--out", str(out), "--tokenize", str(tmp_path / "s")])
    assert r.exit_code != 0 and "--allow-random-weights" in r.output, r.output
    assert not out.exists(), "the tokenize stage's refusal comes before the ingest's work"
    r = CliRunner().invoke(cli, ["ingest", str(raw), "--out", str(out), "--allow-random-weights"])
    assert r.exit_code == 2 and "--tokenize" in r.output
