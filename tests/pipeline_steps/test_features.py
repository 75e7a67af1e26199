"""Features on synthetic signals with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from accord.pipeline import features as F

SR = 16000


def _gated_tone(seconds: float = 4.0, sr: int = SR) -> np.ndarray:
    """A 440 Hz tone switched on and off every second: 'speech' with pauses."""
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)).astype(np.float64)


@pytest.mark.parametrize("snr", [0.0, 10.0, 20.0, 30.0])
def test_snr_of_a_gated_tone_in_white_noise(snr):
    rng = np.random.default_rng(0)
    tone = _gated_tone()
    p_signal = np.mean(tone[tone != 0] ** 2)
    noise = rng.standard_normal(len(tone)) * np.sqrt(p_signal / 10 ** (snr / 10))
    assert F.snr_db(tone + noise, SR) == pytest.approx(snr, abs=2.5)


def test_snr_uses_vad_frames_when_given():
    rng = np.random.default_rng(1)
    tone = _gated_tone()
    noise = rng.standard_normal(len(tone)) * np.sqrt(np.mean(tone[tone != 0] ** 2) / 100)  # 20 dB
    frames = len(tone) // 512
    probs = np.array([0.95 if np.any(tone[i * 512 : (i + 1) * 512]) else 0.02 for i in range(frames)])
    assert F.snr_db(tone + noise, SR, probs) == pytest.approx(20.0, abs=2.0)


def test_noise_alone_has_low_snr_and_digital_silence_is_capped():
    rng = np.random.default_rng(2)
    assert F.snr_db(rng.standard_normal(4 * SR) * 0.1, SR) < 3.0
    assert F.snr_db(_gated_tone(), SR) == 80.0


def test_bandwidth_of_band_limited_noise():
    rng = np.random.default_rng(3)
    full = rng.standard_normal(2 * 44100)
    assert F.bandwidth_hz(full, 44100) > 20000
    for low_rate in (8000, 16000, 22050):  # a low-rate recording upsampled into a 44.1 kHz file
        up = soxr.resample(rng.standard_normal(2 * low_rate), low_rate, 44100)
        assert F.bandwidth_hz(up, 44100) == pytest.approx(low_rate / 2, rel=0.08)
    assert F.bandwidth_hz(np.zeros(44100), 44100) == 0.0


def test_loudness_of_a_full_scale_sine():
    t = np.arange(3 * 48000) / 48000
    # BS.1770: a 997 Hz full-scale sine reads -3.01 LUFS
    assert F.loudness_lufs(np.sin(2 * np.pi * 997 * t), 48000) == pytest.approx(-3.01, abs=0.1)
    assert F.loudness_lufs(np.zeros(48000), 48000) == -70.0


def test_speaking_rate_counts_utf8_bytes_without_punctuation_and_annotations():
    assert F.text_bytes("Hello, world! [music]") == 10
    assert F.text_bytes("Café (laughs) — ok?") == 7  # é is 2 bytes
    assert F.text_bytes("你好。") == 6
    assert F.speaking_rate("abcdefghij", 2.0) == 5.0


def test_silences_from_vad_frames():
    p = np.array([0.0] * 10 + [0.9] * 20 + [0.1] * 15 + [0.9] * 20 + [0.0] * 5)
    lead, trail, pause = F.silences(p)
    assert lead == pytest.approx(10 * F.FRAME_S)
    assert trail == pytest.approx(5 * F.FRAME_S)
    assert pause == pytest.approx(15 * F.FRAME_S)


def test_compute_fills_every_schema_feature():
    from accord.core.clip import FEATURE_FIELDS

    x = _gated_tone().astype(np.float32)
    out = F.compute(x, "hello there", np.full(len(x) // 512, 0.9))
    assert set(out) == {name for name, _ in FEATURE_FIELDS}
    assert all(np.isfinite(v) for v in out.values())


@pytest.mark.parametrize(
    ("n", "nperseg", "rate"), [(44100, 2048, 44100), (3001, 2048, 16000), (700, 700, 8000), (999, 333, 22050)]
)
def test_welch_psd_equals_scipy(n, nperseg, rate):
    from scipy.signal import welch

    x = np.random.default_rng(n).standard_normal(n) + 0.3
    f_ref, p_ref = welch(x, fs=rate, nperseg=nperseg)
    f, p = F.welch_psd(x, rate, nperseg)
    np.testing.assert_allclose(f, f_ref)
    np.testing.assert_allclose(p, p_ref, rtol=1e-9, atol=1e-15)
