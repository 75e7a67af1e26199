"""Transcript sanity checks: each measure on text with a known answer, and the step's clip flag."""

from __future__ import annotations

import numpy as np
import pytest

from accord.pipeline.features import silences
from accord.pipeline.steps.score import TranscriptCheckStep
from accord.pipeline.transcript_checks import (
    CheckConfig,
    all_flagged,
    check,
    compression_ratio,
    repeat_ratio,
    repeated_tail,
)

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank today."
LOOP = "thank you for watching " * 8


def test_repeat_ratio_separates_loops_from_speech() -> None:
    assert repeat_ratio(SENTENCE) == 0.0
    assert repeat_ratio(LOOP) > 0.8
    assert repeat_ratio("you " * 6) == pytest.approx(0.75)  # 4 trigrams, one distinct
    assert repeat_ratio("you you you") == 0.0  # too few n-grams to call a loop
    # a no-space script is read in characters
    assert (
        repeat_ratio("谢谢观看" * 6, "zh") > 0.7 and repeat_ratio("今天天气很好我们去公园散步吧", "zh") == 0.0
    )


def test_repeated_tail_catches_a_loop_of_two_and_not_a_speakers_repetition() -> None:
    # Whisper base on a Swedish NST sentence: half of it dropped, the rest said twice; under
    # both n-gram repeats (three copies needed to pass half) and compression (too short)
    two = "Hors huslekar det börja i översä och huslekar det börja i översä"
    assert repeated_tail(two, "sv") == pytest.approx(10 / 12)
    assert check(two, "sv", speech_s=6.0)["flags"] == ["repeated_tail"]
    assert repeat_ratio(two, "sv") <= 0.5 and compression_ratio(two) < 2.4
    # anaphora goes on to new words; a short repeat is not a loop
    assert repeated_tail("it was the age of wisdom, it was the age of foolishness") == 0.0
    assert repeated_tail("no no no, I said no no no") == 0.0
    assert repeated_tail(SENTENCE) == 0.0 and repeated_tail("") == 0.0
    assert repeated_tail("谢谢大家的观看。谢谢大家的观看。", "zh") == 0.0  # 7 characters: under 8
    assert repeated_tail("我们今天去公园散步吧我们今天去公园散步吧", "zh") == 1.0


def test_compression_ratio_is_whispers_loop_detector() -> None:
    assert compression_ratio(SENTENCE) < 1.5 < 2.4 < compression_ratio(LOOP)
    assert compression_ratio("") == 0.0


def test_check_flags_each_rule_and_never_an_empty_transcript() -> None:
    ok = check(SENTENCE, "en", speech_s=4.0)
    assert ok["flags"] == [] and 10 < ok["chars_per_s"] < 20
    assert check(LOOP, "en", speech_s=10.0)["flags"] == ["repeat_ratio", "compression_ratio", "repeated_tail"]
    # more text than 1 s of speech can hold
    assert check(SENTENCE, "en", speech_s=1.0)["flags"] == ["chars_per_s"]
    # Whisper's own rule: no speech and a low log-probability together
    assert check("thanks", "en", 2.0, no_speech_prob=0.9, avg_logprob=-1.5)["flags"] == ["no_speech_prob"]
    assert check("thanks", "en", 2.0, no_speech_prob=0.9, avg_logprob=-0.2)["flags"] == []
    # far too little text for the speech: a decoder that dropped most of it ("M" for 4 s)
    assert check("M", "sv", speech_s=4.0)["flags"] == ["too_little_text"]
    assert check("Yes.", "en", speech_s=1.5)["flags"] == []  # a short clip may hold one word
    assert check("对，这就是我。", "zh", speech_s=2.5)["flags"] == []
    assert check("thanks", "en", 2.0)["flags"] == []  # NaN: a system without it never flags
    assert check("", "en", 0.0)["flags"] == [] and check(
        LOOP, "en", 10.0, cfg=CheckConfig(max_repeat_ratio=0.95, max_tail_share=1.0)
    )["flags"] == ["compression_ratio"]


def test_step_marks_a_clip_hallucinated_only_when_every_system_is_flagged() -> None:
    audio = np.zeros(16000 * 5, np.float32)
    probs = np.r_[np.zeros(10), np.ones(len(audio) // 512 - 20), np.zeros(10)].astype(np.float32)
    lead, trail, _ = silences(probs)  # what FeatureStep, which runs first, records
    item = {"audio_16k": audio, "language": "en", "leading_silence_s": lead, "trailing_silence_s": trail}
    step = TranscriptCheckStep()
    both = step.process(
        {**item, "transcripts": [{"system": "a", "text": LOOP}, {"system": "b", "text": LOOP}]}
    )[0]
    assert both["hallucinated"] is True and all(t["flags"] for t in both["transcripts"])
    one = step.process(
        {**item, "transcripts": [{"system": "a", "text": LOOP}, {"system": "b", "text": SENTENCE}]}
    )[0]
    assert one["hallucinated"] is False and one["transcripts"][1]["flags"] == []
    # characters per second count the speech between VAD's leading and trailing silence
    speech_s = 5.0 - 20 * 512 / 16000
    assert one["transcripts"][1]["chars_per_s"] == pytest.approx(
        len("".join(SENTENCE.split()).rstrip(".")) / speech_s
    )
    assert step.process({**item, "transcripts": []})[0]["hallucinated"] is False
    assert not all_flagged([])
