"""Building blocks of the generator: TTS voices, silence trimming, backgrounds, codecs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.samples import encode, mixing, tts


@pytest.mark.parametrize("label", sorted(tts.VOICES))
def test_every_listed_voice_speaks(label):
    voice = tts.VOICES[label]
    x, sr = tts.synthesize(voice, "Hola." if voice.language == "es" else "Hello there.")
    a, b = tts.trim_silence(x, sr)
    assert sr >= 8000 and 0.2 < (b - a) / sr < 3.0 and np.abs(x[a:b]).max() > 0.05


def test_unknown_engine_is_a_clear_error():
    with pytest.raises(tts.TTSError, match="unknown TTS engine"):
        tts.synthesize(tts.Voice("say", "alex", "en"), "hi")


@settings(max_examples=25, deadline=None)
@given(lead=st.floats(0.0, 1.0), dur=st.floats(0.1, 2.0), tail=st.floats(0.0, 1.0))
def test_trim_silence_finds_the_tone(lead, dur, tail):
    sr = 8000
    t = np.arange(int(dur * sr)) / sr
    tone = 0.5 * np.sin(2 * np.pi * 200 * t)
    x = np.concatenate([np.zeros(int(lead * sr)), tone, np.zeros(int(tail * sr))])
    a, b = tts.trim_silence(x, sr)
    assert abs(a / sr - lead) <= 0.011 and abs(b / sr - (lead + dur)) <= 0.011


def test_trim_silence_of_silence_is_empty():
    assert tts.trim_silence(np.zeros(16000), 16000) == (0, 0)


@settings(max_examples=20, deadline=None)
@given(snr=st.floats(0.0, 30.0), seed=st.integers(0, 2**16))
def test_add_at_snr_is_exact(snr, seed):
    rng = np.random.default_rng(seed)
    speech = np.zeros(8000)
    speech[2000:6000] = np.sin(np.arange(4000) * 0.1)
    active = speech != 0
    noise = mixing.white_noise(8000, rng)
    mixed = mixing.add_at_snr(speech, noise, snr, active)
    bg = mixed - speech
    measured = 10 * np.log10(np.mean(speech[active] ** 2) / np.mean(bg**2))
    assert abs(measured - snr) < 1e-6


def test_pink_noise_falls_3db_per_octave():
    x = mixing.pink_noise(1 << 16, np.random.default_rng(0))
    p = np.abs(np.fft.rfft(x)) ** 2
    band = lambda lo: p[lo : 2 * lo].mean()  # noqa: E731
    slope = 10 * np.log10(band(4096) / band(1024)) / 2  # dB per octave over two octaves
    assert -4.0 < slope < -2.0


def test_tones_are_harmonic_and_not_noise():
    sr = 16000
    x = mixing.tones(sr * 4, sr, np.random.default_rng(0))
    p = np.abs(np.fft.rfft(x)) ** 2
    top = np.sort(p)[::-1]
    assert top[:200].sum() / p.sum() > 0.5  # energy sits in a few spectral lines
    assert abs(x.std() - 1) < 1e-6


@pytest.mark.parametrize("rate_in,rate_out", [(16000, 44100), (22050, 48000), (32000, 16000)])
def test_resample_keeps_a_tone(rate_in, rate_out):
    t = np.arange(rate_in) / rate_in
    y = mixing.resample(np.sin(2 * np.pi * 440 * t), rate_in, rate_out)
    assert len(y) == rate_out
    f = np.argmax(np.abs(np.fft.rfft(y))) * rate_out / len(y)
    assert abs(f - 440) < 2


@pytest.mark.parametrize("fmt", sorted(encode.FORMATS))
def test_every_format_round_trips_without_delay(fmt, tmp_path):
    f = encode.FORMATS[fmt]
    sr = 48000 if f.rates and 44100 not in f.rates else 44100
    rng = np.random.default_rng(0)
    x = np.zeros(sr)
    x[sr // 4 : sr // 4 + sr // 2] = 0.3 * rng.standard_normal(sr // 2)
    path = encode.write(np.stack([x, 0.5 * x], axis=1), sr, tmp_path / f"t.{f.ext}", fmt)
    y, dec_sr = encode.decode(path)
    # AAC decodes up to one 1024-sample frame of end padding; nothing is ever lost at the end
    assert dec_sr == sr and y.shape[1] == 2 and 0 <= len(y) - sr <= 2048
    assert encode.lag_samples(x, y[:, 0], max_lag=sr // 10) == 0


def test_write_rejects_a_rate_the_codec_cannot_take(tmp_path):
    with pytest.raises(ValueError, match="does not take 44100"):
        encode.write(np.zeros(100), 44100, tmp_path / "x.ogg", "ogg_opus")
