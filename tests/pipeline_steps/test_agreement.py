"""Normalisers and the agreement definition."""

from __future__ import annotations

import math

import pytest

from accord.pipeline.agreement import consensus_language, pair_score, score
from accord.pipeline.wer_norm import is_char_scored, normalize, strip_annotations


def test_english_normaliser_is_whisper_style():
    assert normalize("Mr. Smith didn't colour it!", "en") == "mister smith did not color it"
    assert normalize("Twenty-five [music] percent", "en-US") == normalize("25 percent", "en")


def test_basic_normaliser_for_other_languages():
    assert normalize("¿Qué tal?  (risas) Muy BIEN.", "es") == "qué tal muy bien"
    assert normalize("Äpfel, Birnen; und <noise> Öl!", "de") == "äpfel birnen und öl"


def test_no_space_languages_are_scored_on_characters():
    assert is_char_scored("zh") and is_char_scored("ja-JP") and not is_char_scored("en")
    assert normalize("你好，世界！", "zh") == "你好世界"
    p = pair_score("a", normalize("今日は良い天気", "ja"), "b", normalize("今日は悪い天気", "ja"), "ja")
    assert p.error == pytest.approx(1 / 7)
    assert p.wer == pytest.approx(p.cer)


def test_annotations_are_stripped():
    assert strip_annotations("hi [music] there (laughs) <unk> ♪♪").split() == ["hi", "there"]


def _t(system: str, text: str, lang: str = "", prob: float = math.nan) -> dict:
    return {"system": system, "model": "m", "text": text, "language": lang, "language_prob": prob}


def test_agreement_identical_disjoint_and_partial():
    assert score([_t("a", "The cat sat."), _t("b", "the cat sat")], "en")[1] == 1.0
    assert score([_t("a", "red green blue"), _t("b", "one two three")], "en")[1] == 0.0
    pairs, agreement = score([_t("a", "alpha beta gamma delta"), _t("b", "alpha beta gamma omega")], "en")
    assert agreement == pytest.approx(0.75)
    assert pairs == [
        {"a": "a:m", "b": "b:m", "wer": pytest.approx(0.25), "cer": pytest.approx(pairs[0]["cer"])}
    ]


def test_agreement_is_symmetric_and_bounded():
    x, y = _t("a", "red blue"), _t("b", "red blue green cyan pink gray")
    a1, a2 = score([x, y], "en")[1], score([y, x], "en")[1]
    assert a1 == a2 and 0.0 <= a1 <= 1.0
    # jiwer's WER (a as reference) can exceed 1; the agreement never leaves [0, 1]
    assert score([x, y], "en")[0][0]["wer"] == pytest.approx(2.0)


def test_empty_transcripts_are_no_evidence():
    assert score([_t("a", ""), _t("b", "  ")], "en")[1] == 0.0  # both empty: no evidence -> 0
    pairs, agreement = score([_t("a", ""), _t("b", "hello there")], "en")
    assert (
        agreement == 0.0
        and math.isnan(pairs[0]["wer"])
        and pairs[0]["cer"] == pytest.approx(math.nan, nan_ok=True)
    )
    pairs, agreement = score([_t("a", "hello")], "en")  # one system: single-system, not disagreeing
    assert pairs == [] and math.isnan(agreement)
    # an empty-empty pair is skipped, the informative pairs decide
    three = [_t("a", "hello world"), _t("b", "hello world"), _t("c", "")]
    assert score(three, "en")[1] == pytest.approx(1 - (0 + 1 + 1) / 3)


def test_every_transcript_is_kept_and_normalised():
    ts = [_t("a", "Hello, World!"), _t("b", "hello world"), _t("c", "")]
    score(ts, "en")
    assert [t["normalized"] for t in ts] == ["hello world", "hello world", ""]
    assert [t["text"] for t in ts] == ["Hello, World!", "hello world", ""]


def test_consensus_language():
    assert consensus_language([_t("a", "x", "de", 0.6), _t("b", "x", "en", 0.9), _t("c", "x", "en")]) == (
        "en",
        0.9,
    )
    lang, prob = consensus_language([_t("a", "x", "en"), _t("b", "x", "en"), _t("c", "x", "fr")])
    assert lang == "en" and math.isnan(prob)
    assert consensus_language([_t("a", "x")])[0] == ""
