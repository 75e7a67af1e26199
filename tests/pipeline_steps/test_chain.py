"""All steps over the generated bucket, without Ray: clips -> transcripts -> rows of CLIP_SCHEMA."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from accord.core.clip import CLIP_SCHEMA, ELIGIBILITY_COLUMNS

pytestmark = pytest.mark.integration

SUBSET = {
    "en_espeak_us",
    "en_flite_slt",
    "en_flite_rms",
    "en_festival_kal",
    "de_espeak",
    "noise_only",
    "music_only",
}


@pytest.fixture(scope="module")
def rows(sample_bucket, bucket_clips, whisper_base, moonshine_tiny):
    from accord.core.eligibility import load_thresholds
    from accord.pipeline.dnsmos import DnsmosConfig
    from accord.pipeline.lid import LanguageIdConfig
    from accord.pipeline.steps import (
        AgreementStep,
        AsrStep,
        DnsmosStep,
        EligibilityStep,
        FeatureStep,
        LanguageIdStep,
        SpeakerConsistencyStep,
        TextLanguageStep,
        TranscriptCheckStep,
        to_row,
    )
    from accord.pipeline.steps.score import EligibilityConfig
    from accord.samples import TTS_ELIGIBILITY

    # a cross-section of the bucket: clean and noisy English, German, noise/music only
    picked = [n for n in sorted(bucket_clips) if n.split(".")[0] in SUBSET]
    assert len(picked) == len(SUBSET)
    clips = [c for n in picked if isinstance(bucket_clips[n], list) for c in bucket_clips[n]]
    # the model steps in the ingest's order (pipeline/job/plan.py), then the CPU steps
    models = [
        LanguageIdStep(LanguageIdConfig(threads=2)),
        AsrStep([whisper_base, moonshine_tiny]),
        DnsmosStep(DnsmosConfig(max_windows=1, threads=2)),
        SpeakerConsistencyStep(),
    ]
    # synthetic voices: DNSMOS thresholds measured on them (accord/samples/tts_eligibility.yaml)
    thresholds = load_thresholds(str(TTS_ELIGIBILITY))
    steps = [
        AgreementStep(),
        TextLanguageStep(),
        FeatureStep(),
        TranscriptCheckStep(),
        EligibilityStep(EligibilityConfig(thresholds)),
    ]
    out = []
    for i in range(0, len(clips), 16):  # batches as an actor pool would see them
        batch = clips[i : i + 16]
        for model in models:
            batch = model.process_batch(batch)
        for item in batch:
            for step in steps:
                (item,) = step.process(item)
            out.append(to_row(item, run_id="test-run"))
    return out


def _truth_for(sample_bucket, row):
    name = row["source_uri"].rsplit("/", 1)[-1]
    return sample_bucket.truth[name]


def test_rows_match_the_clip_schema_exactly(rows):
    table = pa.Table.from_pylist(rows, schema=CLIP_SCHEMA)
    assert table.schema.equals(CLIP_SCHEMA) and table.num_rows == len(rows)
    assert all(set(r) == set(CLIP_SCHEMA.names) for r in rows)
    assert len({r["clip_id"] for r in rows}) == len(rows)
    assert all(r["run_id"] == "test-run" and len(r["source_sha256"]) == 64 for r in rows)


def test_each_clip_goes_to_the_systems_of_its_language(rows):
    """A clip whose plausible languages (the LID's top one and any at 0.1 or more) are all English
    goes to both systems, any other to Whisper alone (Moonshine tiny-en is English only):
    single-system, agreement NaN."""
    from accord.pipeline.steps.asr import PLAUSIBLE_MIN_PROB

    seen = set()
    for r in rows:
        systems = [t["system"] for t in r["transcripts"]]
        assert systems[0] == "faster-whisper" and r["n_asr"] == len(systems)
        plausible = {r["language"]} | {
            s["language"] for s in r["language_scores"] if s["prob"] >= PLAUSIBLE_MIN_PROB
        }
        if plausible == {"en"}:
            assert systems == ["faster-whisper", "moonshine"] and len(r["pairs"]) == 1
            assert 0.0 <= r["agreement"] <= 1.0
            seen.add("en")
        else:
            assert systems == ["faster-whisper"] and r["pairs"] == [] and math.isnan(r["agreement"])
            seen.add("other")
    assert seen == {"en", "other"}


def test_clean_english_passes_anneal_and_the_rest_does_not(sample_bucket, rows):
    clean_en = [
        r
        for r in rows
        if _truth_for(sample_bucket, r)["language"] == "en"
        and _truth_for(sample_bucket, r)["background"] == "clean"
    ]
    assert len(clean_en) >= 8
    passed = sum(r["eligible_anneal1"] for r in clean_en) / len(clean_en)
    assert passed >= 0.6, f"only {passed:.0%} of clean English clips pass anneal1"
    for r in rows:
        if r["agreement"] < 0.5:  # systems disagree: never anneal
            assert not r["eligible_anneal1"] and not r["eligible_anneal2"]
        stages = [r[c] for c in ELIGIBILITY_COLUMNS]
        assert stages == sorted(stages, reverse=True), "a later stage passed where an earlier failed"
    # moonshine is English-only: non-English clips have one system, so pretrain and midtrain may
    # take them (single-system, not disagreeing) but the anneal stages, which need two, never do
    other = [r for r in rows if _truth_for(sample_bucket, r)["language"] != "en"]
    assert other and not any(r["eligible_anneal1"] for r in other)
    assert {r["language"] for r in other if r["language_prob"] > 0.7} <= {"de", "es"}
    assert any(r["eligible_pretrain"] for r in other if r["language"] == "de")


def test_noise_and_music_only_files_yield_no_eligible_clip(sample_bucket, bucket_clips, rows):
    for name, truth in sample_bucket.truth.items():
        if truth["sentences"]:
            continue
        kept = [r for r in rows if r["source_uri"].endswith("/" + name)]
        assert not any(r["eligible_anneal1"] for r in kept), name


def test_features_are_plausible(sample_bucket, rows):
    for r in rows:
        # a decoding loop (espeak German heard as Latin, Whisper told Latin) is flagged, an empty
        # transcript has no rate, and a transcript in the wrong language ("Imwintaist" for 3 s of
        # espeak German heard as Latin, on one CPU and not another) has the rate of garble: none
        # is plausible, each is judged by its gate (hallucination, agreement, language)
        truth = _truth_for(sample_bucket, r)
        text = r["transcripts"][0]["text"] if r["transcripts"] else ""
        heard_right = r["language"] == truth["language"]
        assert 5.0 < r["speaking_rate"] < 30.0 or r["hallucinated"] or not text.strip() or not heard_right, r[
            "transcripts"
        ]
        assert -70.0 <= r["loudness_lufs"] < 0.0
        assert 0.0 < r["bandwidth_hz"] <= r["source_sample_rate"] / 2 + 1
        assert 0.0 <= r["leading_silence_s"] < 1.0 and 0.0 <= r["trailing_silence_s"] < 1.0
        if truth["background"] == "clean":
            assert r["snr_db"] > 30.0
        elif truth.get("snr_db") is not None:
            assert r["snr_db"] < truth["snr_db"] + 15.0
        assert not math.isnan(r["language_prob"])
