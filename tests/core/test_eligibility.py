"""Stage thresholds: defaults as data, monotone, NaN-safe, overridable, re-applicable."""

from __future__ import annotations

import itertools
import math

import pytest

from accord.core.eligibility import (
    DEFAULT_THRESHOLDS,
    StageThresholds,
    eligible,
    eligible_for,
    failures,
    load_thresholds,
    threshold_overrides,
)
from accord.core.stages import STAGES

CLEAN = {
    "agreement": 0.97,
    "duration_s": 4.0,
    "snr_db": 45.0,
    "bandwidth_hz": 11000.0,
    "speaking_rate": 15.0,
    "language": "en",
    "language_prob": 0.98,
    "leading_silence_s": 0.2,
    "trailing_silence_s": 0.25,
    "n_asr": 2,
    "hallucinated": False,
    "dnsmos_ovrl": 3.4,
    "speaker_consistency": 0.9,
    "speaker_split_sim": 0.85,
    "language_check": "agrees",
}


def test_clean_speech_is_eligible_everywhere():
    assert eligible(CLEAN) == dict.fromkeys(STAGES, True)


@pytest.mark.parametrize(
    "change, last_ok",
    [
        ({"agreement": 0.0}, None),  # the systems disagree: nothing
        ({"agreement": 0.7}, "midtrain"),
        ({"snr_db": 10.0}, "midtrain"),
        ({"bandwidth_hz": 3500.0}, "midtrain"),
        ({"speaking_rate": 45.0}, None),
        ({"duration_s": 0.8}, "pretrain"),
        ({"language_prob": math.nan}, "midtrain"),  # unknown probability fails where it is required
        ({"leading_silence_s": 0.8}, "anneal1"),
        ({"language_prob": 0.6}, "midtrain"),  # per-clip LID below 0.7
        # one capable system (German clip, English-only second system): single-system, not disagreeing
        ({"n_asr": 1, "agreement": math.nan}, "midtrain"),
        ({"n_asr": 0, "agreement": math.nan}, None),  # nobody could transcribe it
        ({"hallucinated": True}, None),  # every system's transcript failed its checks
        ({"dnsmos_ovrl": 2.5}, "midtrain"),
        ({"dnsmos_ovrl": math.nan}, "midtrain"),  # unscorable fails where DNSMOS is required
        ({"speaker_consistency": 0.7}, "midtrain"),
        ({"speaker_split_sim": 0.6}, "midtrain"),  # a second voice
        ({"language_check": "differs"}, None),  # the text is in another language than the audio
        ({"language_check": "unverified"}, "midtrain"),  # too little text to confirm the language
        ({"language_check": ""}, "midtrain"),  # no text identifier ran: not confirmed
        ({"source_language": "de"}, "anneal2"),  # a confident code switch over 4 s
        ({"source_language": "de", "language_prob": 0.6}, None),  # an unsure one: a wrong LID, likely
        ({"source_language": "de", "duration_s": 1.6}, None),  # too short to tell
    ],
)
def test_stricter_stages_reject_more(change, last_ok):
    got = eligible({**CLEAN, **change})
    expected_ok = STAGES[: STAGES.index(last_ok) + 1] if last_ok else ()
    assert got == {s: s in expected_ok for s in STAGES}


def test_defaults_are_monotone():
    for earlier, later in itertools.pairwise(STAGES):
        a, b = DEFAULT_THRESHOLDS[earlier], DEFAULT_THRESHOLDS[later]
        for name in (
            "min_agreement",
            "min_duration_s",
            "min_snr_db",
            "min_bandwidth_hz",
            "min_language_prob",
            "min_asr_systems",
            "min_dnsmos_ovrl",
            "min_speaker_consistency",
            "min_speaker_split_sim",
        ):
            assert getattr(b, name) >= getattr(a, name), (earlier, later, name)
        for name in ("max_duration_s", "max_speaking_rate", "max_leading_silence_s"):
            assert getattr(b, name) <= getattr(a, name), (earlier, later, name)


def test_missing_features_fail_only_active_thresholds():
    assert eligible({"agreement": 0.5, "duration_s": 2.0, "speaking_rate": 10.0, "n_asr": 2, "snr_db": 20.0})[
        "pretrain"
    ]
    assert not eligible({"duration_s": 2.0, "n_asr": 2})["pretrain"]  # agreement required
    assert failures({}, StageThresholds()) == []  # neutral thresholds look at nothing


def test_asr_systems_of_a_version_1_row_come_from_its_transcripts():
    """Version-1 manifests have no n_asr: the transcripts say how many systems ran."""
    row = {**CLEAN, "n_asr": None, "transcripts": [{"text": "a"}, {"text": "a"}]}
    assert eligible(row) == dict.fromkeys(STAGES, True)
    one = {**CLEAN, "n_asr": None, "agreement": 0.0, "transcripts": [{"text": "a"}]}
    assert failures(one, DEFAULT_THRESHOLDS["anneal1"]) == ["min_asr_systems"]
    assert failures({**CLEAN, "n_asr": None}, DEFAULT_THRESHOLDS["anneal1"]) == ["min_asr_systems"]
    with pytest.raises(ValueError, match="true or false"):
        load_thresholds({"pretrain": {"reject_hallucinated": "no"}})
    assert not load_thresholds({"pretrain": {"reject_hallucinated": False}})["pretrain"].reject_hallucinated


def test_overrides_from_config_and_language_allow_list():
    th = load_thresholds(
        {"anneal2": {"min_agreement": 0.99, "languages": ["de"]}, "pretrain": {"languages": "en"}}
    )
    assert (
        th["anneal2"].min_agreement == 0.99
        and th["anneal2"].min_snr_db == DEFAULT_THRESHOLDS["anneal2"].min_snr_db
    )
    got = eligible(CLEAN, th)
    assert got["pretrain"] and not got["anneal2"]
    assert failures(CLEAN, th["anneal2"]) == ["min_agreement", "languages"]
    with pytest.raises(ValueError, match="unknown threshold"):
        load_thresholds({"anneal1": {"min_agreemnt": 0.5}})
    with pytest.raises(ValueError, match="unknown stage"):
        load_thresholds({"anneal3": {}})


def test_thresholds_round_trip_through_plain_data():
    for t in DEFAULT_THRESHOLDS.values():
        assert StageThresholds.from_mapping(t.to_dict()) == t


def test_reapplied_at_read_time_on_manifest_rows():
    """Rows as read back from Parquet (pandas, NaN for unknown) give the same verdicts."""
    import pandas as pd

    df = pd.DataFrame([CLEAN, {**CLEAN, "agreement": 0.75}, {**CLEAN, "language_prob": float("nan")}])
    verdicts = [eligible(r) for r in df.to_dict("records")]
    assert [v["anneal1"] for v in verdicts] == [True, False, False]


def test_thresholds_from_a_yaml_file_or_a_run_config(tmp_path):
    (tmp_path / "t.yaml").write_text("anneal1:\n  min_agreement: 0.55\n")
    (tmp_path / "run.yaml").write_text("ingest:\n  eligibility:\n    anneal2: {min_snr_db: 7}\n")
    assert load_thresholds(str(tmp_path / "t.yaml"))["anneal1"].min_agreement == 0.55
    run = load_thresholds(str(tmp_path / "run.yaml"))
    assert run["anneal2"].min_snr_db == 7.0 and run["anneal1"] == DEFAULT_THRESHOLDS["anneal1"]


def test_overrides_round_trip_and_layer(tmp_path):
    """What tokenize records in tokenize.json (``threshold_overrides``) rebuilds its thresholds
    through JSON, infinite limits included; a second layer goes on top (the trainer's recipe)."""
    import json

    th = load_thresholds({"anneal1": {"min_snr_db": 8.0, "max_duration_s": math.inf, "languages": ["de"]}})
    over = json.loads(json.dumps(threshold_overrides(th), allow_nan=False))
    assert over == {"anneal1": {"min_snr_db": 8.0, "max_duration_s": "inf", "languages": ["de"]}}
    assert load_thresholds(over) == th and threshold_overrides(DEFAULT_THRESHOLDS) == {}
    layered = load_thresholds({"anneal1": {"min_agreement": 0.95}}, base=th)
    assert layered["anneal1"] == StageThresholds.from_mapping({"min_agreement": 0.95}, base=th["anneal1"])
    assert all(eligible_for(CLEAN, s, layered) == eligible(CLEAN, layered)[s] for s in STAGES)


def test_overrides_are_keyed_by_stage():
    with pytest.raises(ValueError, match="keyed by stage"):
        load_thresholds({"min_agreement": 0.9})
