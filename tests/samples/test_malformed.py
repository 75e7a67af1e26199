"""The malformed corpus: every file is present, broken in the way its expected kind says."""

from __future__ import annotations

import av
import numpy as np
import pytest
import soundfile as sf

from accord.samples import ERROR_KINDS, encode
from accord.samples.malformed import EXPECTED


def test_every_file_present_with_a_known_kind(malformed_bucket):
    assert malformed_bucket.expected == EXPECTED
    assert sorted(p.name for p in malformed_bucket.path.iterdir()) == sorted(EXPECTED)
    kinds = set(malformed_bucket.expected.values())
    assert kinds - {None} == set(ERROR_KINDS), "every error kind has at least one file"
    assert sum(k is None for k in kinds) == 1 and list(malformed_bucket.expected.values()).count(None) == 4
    assert set(malformed_bucket.speech) >= {n for n, k in EXPECTED.items() if k is None}


def test_empty_file(malformed_bucket):
    assert (malformed_bucket.path / "empty.wav").stat().st_size == 0


def test_truncated_flac_is_flac_that_fails_to_decode(malformed_bucket):
    p = malformed_bucket.path / "truncated.flac"
    assert p.read_bytes()[:4] == b"fLaC"
    with pytest.raises(av.error.InvalidDataError):
        encode.decode(p)
    with pytest.raises(sf.LibsndfileError):
        sf.read(p)


@pytest.mark.parametrize("name", ["image.flac", "random_bytes.flac"])
def test_not_audio(malformed_bucket, name):
    p = malformed_bucket.path / name
    head = p.read_bytes()[:12]
    audio_magic = (b"RIFF", b"fLaC", b"OggS", b"ID3", b"\x1a\x45\xdf\xa3")
    assert not head.startswith(audio_magic) and head[0] != 0xFF and head[4:8] != b"ftyp"
    with pytest.raises(sf.LibsndfileError):
        sf.info(p)


def test_nan_samples(malformed_bucket):
    x, sr = sf.read(malformed_bucket.path / "nan_samples.wav", dtype="float32")
    assert sr == 16000 and np.isnan(x).sum() == 1600 and np.isfinite(x).sum() > sr


def test_zero_frames(malformed_bucket):
    info = sf.info(malformed_bucket.path / "zero_frames.wav")
    assert info.frames == 0 and info.samplerate == 16000
    x, _ = encode.decode(malformed_bucket.path / "zero_frames.wav")
    assert len(x) == 0


def test_long_silence(malformed_bucket):
    info = sf.info(malformed_bucket.path / "long_silence.flac")
    assert info.samplerate == 8000 and abs(info.duration - 600) < 1
    x, _ = sf.read(malformed_bucket.path / "long_silence.flac", dtype="float32")
    assert np.abs(x).max() < 2e-3 and (x == 0).mean() > 0.5


def test_mp3_named_wav_decodes_by_content(malformed_bucket):
    p = malformed_bucket.path / "mp3_bytes.wav"
    head = p.read_bytes()[:3]
    assert head == b"ID3" or head[0] == 0xFF
    with av.open(str(p)) as c:
        assert c.format.name == "mp3"
    x, sr = encode.decode(p)
    end = malformed_bucket.speech["mp3_bytes.wav"][-1]["end_s"]
    assert sr == 44100 and len(x) / sr > end and np.abs(x).max() > 0.3


def test_high_rate_wav_has_speech(malformed_bucket):
    p = malformed_bucket.path / "high_rate_384k.wav"
    info = sf.info(p)
    assert info.samplerate == 384000
    x, sr = sf.read(p, dtype="float32")
    s = malformed_bucket.speech["high_rate_384k.wav"][0]
    inside = x[int(s["start_s"] * sr) : int(s["end_s"] * sr)]
    assert np.sqrt(np.mean(inside**2)) > 0.03 and np.abs(x[: int(0.4 * sr)]).max() < 1e-3


def test_good_file_decodes(malformed_bucket):
    x, sr = encode.decode(malformed_bucket.path / "good.flac")
    assert sr == 16000 and np.isfinite(x).all()
    assert len(x) / sr > malformed_bucket.speech["good.flac"][-1]["end_s"]


def test_size_small(malformed_bucket):
    assert sum(p.lstat().st_size for p in malformed_bucket.path.iterdir()) < 6e6


def test_error_kinds_match_the_pipeline():
    errors = pytest.importorskip("accord.core.errors")
    # every kind a local corpus can hold; keys with empty/./.. segments exist only in object stores
    assert set(errors.ERROR_KINDS) - set(errors.OBJECT_STORE_KINDS) == set(ERROR_KINDS)
