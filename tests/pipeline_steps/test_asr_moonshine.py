"""Moonshine's batched ONNX engine: the package's tokenizer, the library's accuracy, no cross-talk,
every clip length the VAD cuts."""

from __future__ import annotations

import math
from pathlib import Path

import jiwer
import numpy as np
import pytest

from accord.core.weights import resolve
from accord.pipeline.asr import create_backend
from accord.pipeline.asr.moonshine_onnx import FRAME_SAMPLES, RATE, MoonshineTokenizer, encoder_mask
from accord.pipeline.vad import VadConfig
from accord.pipeline.wer_norm import normalize

# Real read speech the package ships. two_cities.wav (48 kHz, 44 s): Dickens' opening, of
# which the first 30 s say this (the last word is cut at 30.0 s); beckett.wav: 10 s.
TWO_CITIES_30S = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age "
    "of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season "
    "of Light, it was the season of Darkness, it was the spring of hope, it was the winter of despair, "
    "we had everything before us, we had nothing before us, we were all going direct to Heaven, we "
    "were all going direct the other way - in short, the"
)
BECKETT = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better."


def _norm(texts: list[str]) -> list[str]:
    return [normalize(t, "en") for t in texts]


def _wer(reference: str, text: str) -> float:
    return float(jiwer.wer(normalize(reference, "en"), normalize(text, "en")))


def _asset(name: str) -> np.ndarray:
    import moonshine_voice

    from accord.core.audio_io import read_audio

    return read_audio(Path(moonshine_voice.__file__).parent / "assets" / name)


@pytest.fixture(scope="module")
def long_clips() -> dict[str, tuple[np.ndarray, str]]:
    """name -> (16 kHz audio, what it says): the VAD's longest clip, and one of ~10 s."""
    n = round(VadConfig().max_clip_s * RATE)
    return {"30 s": (_asset("two_cities.wav")[:n], TWO_CITIES_30S), "10 s": (_asset("beckett.wav"), BECKETT)}


@pytest.fixture(scope="module")
def tokenizer() -> MoonshineTokenizer:
    return MoonshineTokenizer.from_file(resolve("moonshine:tiny-en") / "tokenizer.bin")


def test_tokenizer_reads_the_package_vocabulary(tokenizer):
    assert len(tokenizer) == 32768  # the decoder's logits width
    assert (tokenizer.bos_id, tokenizer.eos_id) == (1, 2)
    ids = [tokenizer.pieces.index(p) for p in (b"\xe2\x96\x81The", b"\xe2\x96\x81cat", b".")]
    assert tokenizer.decode([tokenizer.bos_id, *ids, tokenizer.eos_id]) == "The cat."
    # byte fallback: a two-byte UTF-8 character from two single-byte pieces
    e_acute = [tokenizer.pieces.index(bytes([b])) for b in "é".encode()]
    assert tokenizer.decode([ids[0], *e_acute]) == "Theé"
    assert tokenizer.decode([tokenizer.pieces.index(b"<<ST_5>>")]) == ""


def test_truncated_tokenizer_is_a_clear_error(tmp_path):
    (tmp_path / "tokenizer.bin").write_bytes(b"\x03<s>\x09</s")
    with pytest.raises(ValueError, match="truncated token 1"):
        MoonshineTokenizer.from_file(tmp_path / "tokenizer.bin")


def test_unknown_engine_is_rejected():
    with pytest.raises(ValueError, match="engine must be"):
        create_backend("moonshine", engine="gpu")


@pytest.mark.integration
def test_onnx_engine_is_as_accurate_as_the_library(english_sentences, moonshine_tiny, moonshine_library):
    audios, refs = [a for a, _ in english_sentences], [t for _, t in english_sentences]
    ours = moonshine_tiny.transcribe_batch(audios)
    lib = moonshine_library.transcribe_batch(audios)
    wer_ours = jiwer.wer(_norm(refs), _norm([t.text for t in ours]))
    wer_lib = jiwer.wer(_norm(refs), _norm([t.text for t in lib]))
    assert wer_ours <= wer_lib + 0.03, (wer_ours, wer_lib)
    assert all(t.text and t.language == "en" for t in ours)
    assert all(-5 < t.avg_logprob < 0 for t in ours)
    # same model, same greedy search: most clips give the library's exact words
    pairs = zip(_norm([t.text for t in ours]), _norm([t.text for t in lib]), strict=True)
    same = sum(a == b for a, b in pairs)
    assert same >= 0.6 * len(audios), same


@pytest.mark.integration
def test_batches_do_not_mix_clips(english_sentences, moonshine_tiny):
    """Each clip is encoded alone and only its own encoder states are visible to its decoder
    rows, so its text does not depend on the other clips beyond float rounding; and a given
    set of clips forms the same batches in any order."""
    audios = [a for a, _ in english_sentences[:6]]
    together = [t.text for t in moonshine_tiny.transcribe_batch(audios)]
    reversed_ = [t.text for t in moonshine_tiny.transcribe_batch(audios[::-1])][::-1]
    assert together == reversed_
    alone = [moonshine_tiny.transcribe_batch([a])[0].text for a in audios]
    assert jiwer.wer(_norm(alone), _norm(together)) < 0.1, (alone, together)


@pytest.mark.integration
def test_token_budget_bounds_decoding_on_noise(moonshine_tiny):
    rng = np.random.default_rng(0)
    noise = [(0.3 * rng.standard_normal(int(16000 * s))).astype(np.float32) for s in (1.0, 2.5)]
    model = moonshine_tiny.model
    budgets = [math.ceil(len(x) / 16000 * 6.5) for x in noise]
    out = model.decode([model.encode(x) for x in noise], budgets)
    assert all(len(d.ids) <= b for d, b in zip(out, budgets, strict=True))


def test_encoder_mask_is_read_per_input_sample():
    """The decoder graph keeps ``mask[:, ::384][:, :T]`` of its encoder mask, so frame f sits at
    sample f * 384; a frame-level mask of T > 384 entries would leave two or more, which cannot
    broadcast (the "2 by 390" failure of every clip from 9.27 s)."""
    frames = [3, 1248, 700]
    mask_BL = encoder_mask(frames)
    kept_BT = mask_BL[:, ::FRAME_SAMPLES][:, : max(frames)]
    assert mask_BL.dtype == np.int64
    np.testing.assert_array_equal(kept_BT, np.arange(max(frames)) < np.asarray(frames)[:, None])
    assert mask_BL.sum() == sum(frames)  # nothing between the kept entries
    assert encoder_mask([415, 415]).shape == (2, 1)  # no padding: ones that broadcast, as the library's


@pytest.mark.integration
@pytest.mark.parametrize("name", ["10 s", "30 s"])
def test_long_clips_read_like_the_library(name, long_clips, moonshine_tiny, moonshine_library):
    """Clips past 384 encoder frames (9.27 s) used to fail in ONNX Runtime; they now read the
    library's words, as well as the library against what was said."""
    audio, said = long_clips[name]
    assert len(moonshine_tiny.model.encode(audio)) > 384
    ours = moonshine_tiny.transcribe_batch([audio])[0]
    lib = moonshine_library.transcribe_batch([audio])[0].text
    assert -5 < ours.avg_logprob < 0
    assert _wer(lib, ours.text) <= 0.1, (ours.text, lib)
    assert _wer(said, ours.text) <= min(0.15, _wer(said, lib) + 0.05), (ours.text, lib)


@pytest.mark.integration
def test_a_short_clip_batched_with_the_longest_keeps_its_own_text(long_clips, moonshine_tiny):
    """One decoder batch of a 2 s and a 30 s clip: the short clip's 1200-odd padded frames are
    masked, so each reads its own words, as it does alone (the decoder's per-batch int8
    activation scales may still flip a low-confidence word, hence a bound)."""
    long_audio, long_said = long_clips["30 s"]
    short_audio, short_said = long_audio[RATE : 3 * RATE], "It was the best of times,"
    assert moonshine_tiny.opts.batch_size >= 2  # both clips in one decoder batch
    short, long_ = (t.text for t in moonshine_tiny.transcribe_batch([short_audio, long_audio]))
    short_alone = moonshine_tiny.transcribe_batch([short_audio])[0].text
    assert _wer(short_said, short) <= 0.34, short  # two words of six at most
    assert _wer(short_alone, short) <= 0.34, (short, short_alone)
    assert _wer(long_said, long_) <= 0.1, long_
