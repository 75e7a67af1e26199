"""Packed Whisper decoding attributes text to the right clip; backends are independent per clip."""

from __future__ import annotations

import numpy as np
import pytest

from accord.pipeline.asr import available_backends, create_backend
from accord.pipeline.wer_norm import normalize

pytestmark = pytest.mark.integration


def _words(text: str) -> set[str]:
    return set(normalize(text, "en").split())


def test_packed_clip_texts_do_not_leak_into_neighbours(english_sentences, whisper_base):
    audios, texts = [a for a, _ in english_sentences], [t for _, t in english_sentences]
    out = whisper_base.transcribe_batch(audios)
    assert max(t.extra["packed"] for t in out) >= 2, "clips were not packed: the test would prove nothing"
    for i, hyp in enumerate(out):
        own = _words(texts[i])
        got = _words(hyp.text)
        assert len(got & own) >= 0.6 * len(own), (texts[i], hyp.text)
        for j in (i - 1, i + 1):
            if 0 <= j < len(texts):
                foreign = {w for w in _words(texts[j]) - own if len(w) > 3}
                assert not (got & foreign), f"clip {i} got words of clip {j}: {got & foreign} in {hyp.text!r}"


def test_one_sentence_split_across_two_clips_keeps_each_half(english_sentences, whisper_base):
    """VAD can cut a sentence at a pause; whisper then decodes both halves as one segment."""
    audio, text = max(english_sentences, key=lambda p: len(p[1].split()))
    # cut at the quietest 50 ms near the middle
    hop = 800
    energy = np.array([np.mean(audio[i : i + hop] ** 2) for i in range(0, len(audio) - hop, hop)])
    mid = len(energy) // 2
    k = mid - 8 + int(np.argmin(energy[mid - 8 : mid + 8]))
    cut = k * hop + hop // 2
    first, second = audio[:cut], audio[cut:]
    out = whisper_base.transcribe_batch([first, second])
    assert out[0].extra["packed"] == 2
    words = normalize(text, "en").split()
    a, b = normalize(out[0].text, "en").split(), normalize(out[1].text, "en").split()
    assert a and b, (out[0].text, out[1].text)
    # the first clip holds the sentence's beginning, the second its end, without duplication
    assert a[0] == words[0] and b[-1] == words[-1]
    assert len(a) + len(b) <= len(words) + 2


def test_groups_are_never_packed_together(sample_bucket, bucket_clips, whisper_base):
    de = next(c for n, c in bucket_clips.items() if sample_bucket.truth[n]["language"] == "de")
    en = next(
        c
        for n, c in bucket_clips.items()
        if n.startswith("en_") and "clean" in sample_bucket.truth[n]["background"]
    )
    clips = [de[0], en[0], de[1], en[1]]
    out = whisper_base.transcribe_batch(
        [c["audio_16k"] for c in clips], groups=[c["source_uri"] for c in clips]
    )
    assert [t.language for t in out] == ["de", "en", "de", "en"]
    assert all(t.extra["packed"] == 2 for t in out)


def test_moonshine_library_has_no_state_between_clips(english_sentences, moonshine_library):
    audios = [a for a, _ in english_sentences[:3]]
    alone = [moonshine_library.transcribe_batch([a])[0].text for a in audios]
    together = [t.text for t in moonshine_library.transcribe_batch(audios[::-1])][::-1]
    assert alone == together


def test_registry():
    assert {"faster-whisper", "moonshine", "nemo"} <= set(available_backends())
    with pytest.raises(ValueError, match="unknown ASR backend"):
        create_backend("nope")


def test_empty_and_tiny_clips_get_a_transcript_not_a_crash(whisper_base, moonshine_tiny, moonshine_library):
    clips = [np.zeros(0, np.float32), np.zeros(800, np.float32), np.zeros(16000, np.float32)]
    for backend in (whisper_base, moonshine_tiny, moonshine_library):
        out = backend.transcribe_batch(clips)
        assert len(out) == 3 and out[0].text == ""
    assert whisper_base.transcribe_batch([]) == [] and moonshine_tiny.transcribe_batch([]) == []
