"""One meaning of eligibility: a relaxed threshold relaxes ingest's eligibility step and manifest
read, tokenize's selection and the trainer's stage selection alike, and a stricter one tightens
them; none of the three trusts a flag stored under other thresholds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from accord.core.eligibility import DEFAULT_THRESHOLDS
from accord.core.manifest import read_manifest
from accord.core.shards import read_samples
from accord.pipeline.steps.score import EligibilityConfig, EligibilityStep
from accord.tokenize.clips import read_clips
from accord.tokenize.codec import CodecConfig
from accord.tokenize.job import TokenizeConfig, run_tokenize
from accord.tokenize.sample_manifest import clip_row, write_manifest
from accord.tokenize.speaker import SpeakerConfig
from accord.train.data import select_samples

pytestmark = pytest.mark.integration  # real tokenize: DAC and ECAPA on two clips

RELAXED = {"anneal1": {"min_snr_db": 8.0}}  # the default anneal1 gate: 15 dB
STRICT = {"anneal1": {"min_snr_db": 12.0}}  # between the two clips' SNR: drops the noisy one again


def selected(shards: Path, eligibility: dict | None = None) -> set[str]:
    """The clips anneal1 trains on under ``shards``."""
    return {c for c, _ in select_samples(str(shards), "anneal1", eligibility=eligibility).iter_weights()}


def _wav(path: Path, hz: float) -> str:
    t = np.arange(int(2.0 * 44100)) / 44100
    x = 0.3 * np.sin(2 * np.pi * hz * t) + 0.01 * np.random.default_rng(0).standard_normal(len(t))
    sf.write(path, x.astype(np.float32), 44100)
    return str(path)


def test_a_relaxed_threshold_relaxes_ingest_tokenize_and_train(tmp_path, dac_codec, auralis_encoder) -> None:
    clean = clip_row(_wav(tmp_path / "a.wav", 220.0), 0.1, 1.7, "a clean clip", "en")
    noisy = clip_row(
        _wav(tmp_path / "b.wav", 330.0), 0.1, 1.7, "a noisy clip", "en", features={"snr_db": 10.0}
    )
    assert DEFAULT_THRESHOLDS["anneal1"].min_snr_db > 10.0 > RELAXED["anneal1"]["min_snr_db"]
    both, only_clean = {clean["clip_id"], noisy["clip_id"]}, {clean["clip_id"]}

    # 1. ingest: the eligibility step records the flags under the run's thresholds ...
    default_step, relaxed_step = EligibilityStep(), EligibilityStep(EligibilityConfig(thresholds=RELAXED))
    assert [default_step.process(r)[0]["eligible_anneal1"] for r in (clean, noisy)] == [True, False]
    assert [relaxed_step.process(r)[0]["eligible_anneal1"] for r in (clean, noisy)] == [True, True]
    rows = [default_step.process(r)[0] for r in (clean, noisy)]  # ingested with the defaults
    out = write_manifest(rows, tmp_path / "ingest")
    # ... and the manifest read recomputes them with the thresholds in force now
    assert set(read_manifest(str(out), stage="anneal1")["clip_id"].to_pylist()) == only_clean
    assert set(read_manifest(str(out), stage="anneal1", thresholds=RELAXED)["clip_id"].to_pylist()) == both

    # 2. tokenize: its selection follows the relaxed threshold, not the stored flag
    assert {c["clip_id"] for c in read_clips(str(out), "anneal1")} == only_clean
    assert {c["clip_id"] for c in read_clips(str(out), "anneal1", thresholds=RELAXED)} == both
    cfg = TokenizeConfig(
        min_stage="anneal1",
        eligibility=RELAXED,
        executor="local",
        codec=CodecConfig(ref="dac:random"),
        speaker=SpeakerConfig(ref="ecapa:auralis"),
    )
    shards = tmp_path / "shards"
    result = run_tokenize(str(out), str(shards), config=cfg, codec=dac_codec, encoder=auralis_encoder)
    assert result.n_samples == 2 and set(read_samples(str(shards))["clip_id"].to_pylist()) == both
    assert json.loads((shards / "tokenize.json").read_text())["eligibility"] == RELAXED

    # 3. train: the stage selection starts from the thresholds tokenize recorded ...
    assert selected(shards) == both
    # ... the recipe's overrides go on top, either way ...
    assert selected(shards, STRICT) == only_clean
    # ... and neither a stored yes nor a stored no decides: eligibility is recomputed
    (shards / "tokenize.json").write_text(
        json.dumps({"eligibility": {}})
    )  # as if tokenized with the defaults
    assert selected(shards) == only_clean  # stored: both eligible
    table = read_samples(str(shards))
    i = table.schema.get_field_index("eligible_anneal1")
    pq.write_table(
        table.set_column(i, "eligible_anneal1", pa.array([False] * len(table))), shards / "samples.parquet"
    )
    assert selected(shards, RELAXED) == both  # stored: neither
