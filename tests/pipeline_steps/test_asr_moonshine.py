"""Moonshine's batched ONNX engine: the package's tokenizer, the library's accuracy, no cross-talk."""

from __future__ import annotations

import math

import jiwer
import numpy as np
import pytest

from accord.pipeline.asr import create_backend
from accord.pipeline.asr.moonshine_onnx import MoonshineTokenizer
from accord.pipeline.text_norm import normalize
from accord.weights import resolve


def _norm(texts: list[str]) -> list[str]:
    return [normalize(t, "en") for t in texts]


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
