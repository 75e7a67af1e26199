"""Issue #2 done-when: offline ASR works here - whisper-base WER < 0.2 and moonshine transcribes."""

from __future__ import annotations

import jiwer
import pytest

from accord.pipeline.wer_norm import normalize

pytestmark = pytest.mark.integration


def _wer(refs: list[str], hyps: list[str]) -> float:
    return jiwer.wer([normalize(r, "en") for r in refs], [normalize(h, "en") for h in hyps])


def test_whisper_base_wer_on_generated_english(english_sentences, whisper_base):
    audios, texts = [a for a, _ in english_sentences], [t for _, t in english_sentences]
    assert len(audios) >= 6
    out = whisper_base.transcribe_batch(audios)
    assert len(out) == len(audios)
    wer = _wer(texts, [t.text for t in out])
    assert wer < 0.2, f"whisper-base WER {wer:.3f}: {[t.text for t in out]}"
    assert all(t.language == "en" and t.language_prob > 0.5 for t in out)
    assert all(t.avg_logprob < 0 for t in out)


def test_moonshine_tiny_transcribes_generated_english(english_sentences, moonshine_tiny):
    audios, texts = [a for a, _ in english_sentences], [t for _, t in english_sentences]
    out = moonshine_tiny.transcribe_batch(audios)
    assert len(out) == len(audios) and all(t.text.strip() for t in out)
    wer = _wer(texts, [t.text for t in out])
    assert wer < 0.4, f"moonshine tiny-en WER {wer:.3f}: {[t.text for t in out]}"
    assert all(t.language == "en" for t in out)


def test_whisper_tiny_en_is_english_only(english_sentences):
    from accord.pipeline.asr import create_backend

    backend = create_backend("faster-whisper", "whisper:tiny.en", threads=2)
    audios, texts = [a for a, _ in english_sentences[:4]], [t for _, t in english_sentences[:4]]
    out = backend.transcribe_batch(audios)
    assert _wer(texts, [t.text for t in out]) < 0.3
    assert all(t.language == "en" and t.language_prob == 1.0 for t in out)
