"""Decoding by content in every common container, windowing, segments, and error kinds."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from accord.core import audio_io, errors

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg to make test files")

DURATION = 3.0


def _signal(rate: int, channels: int) -> np.ndarray:
    """Low tones under a slow envelope: survives every lossy codec, easy to align."""
    t = np.arange(int(DURATION * rate)) / rate
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 1.3 * t)
    x = 0.3 * env * (np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 330 * t + 1.0))
    return np.stack([x * (1.0 - 0.1 * c) for c in range(channels)], axis=1).astype(np.float32)


# (file name, ffmpeg codec args, sample rate, channels)
FORMATS = [
    ("a.wav", ["-c:a", "pcm_s16le"], 22050, 1),
    ("a.flac", ["-c:a", "flac"], 44100, 2),
    ("a.mp3", ["-c:a", "libmp3lame", "-b:a", "128k"], 44100, 2),
    ("a.ogg", ["-c:a", "libvorbis"], 32000, 1),
    ("a.opus", ["-c:a", "libopus"], 48000, 2),
    ("a.m4a", ["-c:a", "aac", "-b:a", "128k"], 44100, 2),
    ("a.webm", ["-c:a", "libopus"], 48000, 1),
    ("a_f32.wav", ["-c:a", "pcm_f32le"], 8000, 3),
]


@pytest.fixture(scope="module")
def encoded(tmp_path_factory) -> dict[str, tuple[Path, int, int]]:
    d = tmp_path_factory.mktemp("formats")
    out = {}
    for name, args, rate, ch in FORMATS:
        src = d / f"src_{rate}_{ch}.wav"
        if not src.exists():
            sf.write(src, _signal(rate, ch), rate, subtype="FLOAT")
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-y", "-i", str(src), *args, str(d / name)], check=True
        )
        out[name] = (d / name, rate, ch)
    return out


def _lag(x: np.ndarray, ref: np.ndarray, max_lag: int) -> int:
    n = min(len(x), len(ref)) - 2 * max_lag
    c = [
        float(np.dot(x[max_lag : max_lag + n], ref[max_lag + k : max_lag + k + n]))
        for k in range(-max_lag, max_lag + 1)
    ]
    return int(np.argmax(c)) - max_lag


@pytest.mark.parametrize("name", [f[0] for f in FORMATS])
def test_decodes_every_format_by_content(encoded, name, tmp_path):
    path, rate, ch = encoded[name]
    # The extension lies: detection must come from the bytes.
    renamed = tmp_path / (path.stem + ".bin")
    shutil.copy(path, renamed)
    info = audio_io.probe(renamed)
    assert info.sample_rate == rate and info.channels == ch
    assert info.duration_s == pytest.approx(DURATION, abs=0.1)
    x = audio_io.read_audio(renamed)
    ref = _signal(16000, 1)[:, 0]
    assert len(x) / 16000 == pytest.approx(DURATION, abs=0.1)
    n = min(len(x), len(ref))
    assert abs(_lag(x[:n], ref[:n], 80)) <= 32  # <= 2 ms
    assert np.corrcoef(x[: n - 800], ref[: n - 800])[0, 1] > 0.9
    assert x.dtype == np.float32 and np.isfinite(x).all()


@pytest.mark.parametrize("name", ["a.flac", "a.mp3", "a.m4a", "a.webm"])
def test_read_segment_is_aligned_with_the_whole_decode(encoded, name):
    path, rate, _ = encoded[name]
    whole = audio_io.read_audio(path)
    for start in (0.25, 1.6):
        seg, sr = audio_io.read_segment(path, start, start + 1.0)
        assert sr == 16000 and len(seg) == pytest.approx(16000, abs=2)
        ref = whole[int(start * 16000) : int(start * 16000) + len(seg)]
        assert abs(_lag(seg, ref, 80)) <= 32
    native, sr = audio_io.read_segment(path, 1.0, 2.0, sample_rate=None)
    assert sr == rate and len(native) == pytest.approx(rate, abs=2)


def test_windows_are_seamless_and_bounded(encoded):
    path, _, _ = encoded["a.mp3"]
    whole = audio_io.read_audio(path)
    windows = list(audio_io.iter_windows(path, window_s=0.7))
    assert all(len(w.audio) == int(0.7 * 16000) for w in windows[:-1])
    assert [round(w.start_s, 3) for w in windows] == [round(0.7 * i, 3) for i in range(len(windows))]
    np.testing.assert_allclose(np.concatenate([w.audio for w in windows]), whole, atol=1e-6)


def test_file_object_and_fsspec_sources(encoded):
    path, _, _ = encoded["a.flac"]
    with open(path, "rb") as f:
        a = audio_io.read_audio(f)
    b = audio_io.read_audio(f"file://{path}")
    np.testing.assert_array_equal(a, b)
    assert audio_io.sha256_of(path) == audio_io.sha256_of(f"file://{path}")


def _kind(path: Path) -> str:
    with pytest.raises(audio_io.AudioError) as e:
        list(audio_io.iter_windows(path))
    return e.value.error_type


def test_error_kinds(tmp_path, encoded):
    (tmp_path / "empty.wav").write_bytes(b"")
    assert _kind(tmp_path / "empty.wav") == errors.EMPTY_FILE
    (tmp_path / "text.mp3").write_bytes(b"hello, this is not audio at all\n" * 50)
    assert _kind(tmp_path / "text.mp3") == errors.NOT_AUDIO
    x = _signal(16000, 1)
    x[1000:1010] = np.nan
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    assert _kind(tmp_path / "nan.wav") == errors.NAN_SAMPLES
    sf.write(tmp_path / "zero.wav", np.zeros((0, 1), np.float32), 16000)
    assert _kind(tmp_path / "zero.wav") in (errors.EMPTY_AUDIO, errors.NOT_AUDIO)
    data = encoded["a.flac"][0].read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 2])
    assert _kind(tmp_path / "cut.flac") == errors.DECODE_ERROR


def test_error_kinds_match_the_malformed_corpus_contract():
    from accord.samples import malformed

    assert set(errors.ERROR_KINDS) - set(errors.OBJECT_STORE_KINDS) == set(malformed.ERROR_KINDS)
    names = ("EMPTY_FILE", "DECODE_ERROR", "NOT_AUDIO", "NAN_SAMPLES", "EMPTY_AUDIO", "NO_SPEECH")
    for name in (*names, "DANGLING_SYMLINK", "NOT_A_FILE"):
        assert getattr(errors, name) == getattr(malformed, name)


@pytest.mark.integration
def test_malformed_corpus_fails_with_its_expected_kind(malformed_bucket):
    from accord.pipeline.sources import list_sources
    from accord.pipeline.steps import DecodeStep, ItemError, VadStep

    listing = list_sources(str(malformed_bucket.path))
    listed = {Path(e["input_uri"]).name: e["error_type"] for e in listing.errors}
    assert listed == {n: k for n, k in malformed_bucket.expected.items() if k in errors.LISTING_KINDS}
    assert "linked.flac" in {Path(s.uri).name for s in listing.sources}, "a link to a file is read"
    decode, vad = DecodeStep(), VadStep()
    for name, expected in sorted(malformed_bucket.expected.items()):
        if expected in errors.LISTING_KINDS:
            continue  # never reach decoding
        item = {"uri": str(malformed_bucket.path / name)}
        if expected is None:
            clips = vad.process(decode.process(item)[0])
            truth = malformed_bucket.speech[name]
            for s in truth:  # every true sentence is inside a clip
                assert any(
                    c["start_s"] <= s["start_s"] + 0.1 and c["end_s"] >= s["end_s"] - 0.1 for c in clips
                ), name
            continue
        with pytest.raises(ItemError) as e:
            vad.process(decode.process(item)[0])
        assert e.value.error_type == expected, f"{name}: {e.value}"


def test_fsspec_uri_through_the_decode_step(encoded):
    import fsspec

    from accord.pipeline.steps import DecodeStep

    path, rate, ch = encoded["a.m4a"]
    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/a.m4a", path.read_bytes())
    item = DecodeStep().process({"source_uri": "memory://bucket/a.m4a"})[0]
    assert (item["source_sample_rate"], item["source_channels"]) == (rate, ch)
    assert item["source_sha256"] == audio_io.sha256_of(path)
    np.testing.assert_allclose(
        audio_io.read_audio("memory://bucket/a.m4a"), audio_io.read_audio(path), atol=1e-6
    )
    seg, sr = audio_io.read_segment("memory://bucket/a.m4a", 1.0, 2.0, 44100)
    assert sr == 44100 and len(seg) == pytest.approx(44100, abs=2)
