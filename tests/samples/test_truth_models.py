"""The truth agrees with real models: silero-vad finds speech exactly at the truth spans and
Whisper tiny.en reads the English sentences cut by the truth as their text."""

from __future__ import annotations

import re

import numpy as np
import pytest

from accord.samples import encode

pytestmark = pytest.mark.integration

TOL_S = 0.3  # the pipeline tests' tolerance on sentence boundaries


@pytest.fixture(scope="module")
def vad():
    from silero_vad.utils_vad import OnnxWrapper

    from accord.core.weights import resolve

    return OnnxWrapper(str(resolve("silero-vad") / "silero_vad.onnx"), force_onnx_cpu=True)


def _speech_segments(vad, path) -> list[tuple[float, float]]:
    import torch
    from silero_vad import get_speech_timestamps

    torch.set_num_threads(1)
    x_T = torch.from_numpy(encode.load_mono(path, 16000))
    segs = get_speech_timestamps(x_T, vad, sampling_rate=16000, return_seconds=True)
    return [(s["start"], s["end"]) for s in segs]


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def test_vad_speech_matches_truth_spans(sample_bucket, vad):
    for name, e in sorted(sample_bucket.truth.items()):
        segs = _speech_segments(vad, sample_bucket.path / name)
        if not e["has_speech"]:
            assert sum(b - a for a, b in segs) < 0.5, f"{name}: VAD found speech {segs}"
            continue
        spans = [(s["start_s"], s["end_s"]) for s in e["sentences"]]
        for span in spans:
            hits = [g for g in segs if _overlap(g, span) > 0]
            covered = sum(_overlap(g, span) for g in hits)
            assert covered > 0.8 * (span[1] - span[0]), f"{name}: {span} covered {covered:.2f} s by {hits}"
            assert abs(hits[0][0] - span[0]) < TOL_S and abs(hits[-1][1] - span[1]) < TOL_S, (
                name,
                span,
                hits,
            )
        widened = [(a - TOL_S, b + TOL_S) for a, b in spans]
        outside = sum((b - a) - sum(_overlap((a, b), w) for w in widened) for a, b in segs)
        assert outside < TOL_S, f"{name}: {outside:.2f} s of VAD speech outside the truth spans"


def _words(s: str) -> str:
    return " ".join(re.sub(r"[^\w' ]+", " ", s.lower()).split())


def test_whisper_reads_truth_sentences(english_sentences):
    import jiwer
    from faster_whisper import WhisperModel

    from accord.core.weights import resolve

    model = WhisperModel(str(resolve("whisper:tiny.en")), device="cpu", compute_type="int8", cpu_threads=2)
    wers = []
    for wav, text in english_sentences:
        segs, _ = model.transcribe(wav, beam_size=1, language="en", condition_on_previous_text=False)
        hyp = " ".join(s.text for s in segs)
        wers.append(jiwer.wer(_words(text), _words(hyp)))
    assert max(wers) < 0.5 and float(np.mean(wers)) < 0.2, wers


def test_vad_on_malformed_speech_and_silence(malformed_bucket, vad):
    for name, sentences in sorted(malformed_bucket.speech.items()):
        if malformed_bucket.expected[name] is not None:
            continue
        segs = _speech_segments(vad, malformed_bucket.path / name)
        for s in sentences:
            covered = sum(_overlap(g, (s["start_s"], s["end_s"])) for g in segs)
            assert covered > 0.8 * (s["end_s"] - s["start_s"]), (name, s, segs)
    assert _speech_segments(vad, malformed_bucket.path / "long_silence.flac") == []
