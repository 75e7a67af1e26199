"""Per-clip conditioning features: speaking rate, loudness, SNR, bandwidth, pauses.

All are estimates from the clip alone (and its VAD frame probabilities), cheap enough to
compute for every clip at ingest time:

- ``speaking_rate``: UTF-8 bytes of the transcript without annotations (``[music]``),
  punctuation and whitespace, per second of speech (clip minus leading/trailing silence).
- ``loudness_lufs``: ITU-R BS.1770 integrated loudness (pyloudnorm), floored at -70.
- ``snr_db``: active speech power over noise power, blind (:mod:`accord.pipeline.snr`: a
  frame-power quantile noise floor whose quantile follows the SNR, helped by the VAD's pauses
  when the clip has them); right on fluent speech without pauses. Clipped to [-10, 80] dB.
- ``bandwidth_hz``: the highest frequency whose smoothed power spectrum (Welch) is within
  ``bandwidth_floor_db`` of the spectral peak, at the source sample rate - an upsampled
  8 kHz recording reports ~4 kHz even inside a 44.1 kHz file.
- ``longest_pause_s``, ``leading_silence_s``, ``trailing_silence_s``: from VAD frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from accord.pipeline import snr
from accord.pipeline.wer_norm import spoken_text

FRAME_S = 512 / 16000


@dataclass(frozen=True)
class FeatureConfig:
    speech_threshold: float = 0.5
    silence_threshold: float = 0.35
    min_noise_frames: int = 3
    bandwidth_floor_db: float = 50.0
    bandwidth_from_source: bool = True  # re-read the clip at the source rate for bandwidth


def text_bytes(text: str) -> int:
    """UTF-8 bytes of ``text`` without annotations, punctuation, symbols or whitespace."""
    return len(spoken_text(text).encode("utf-8"))


def silences(probs: np.ndarray, cfg: FeatureConfig = FeatureConfig()) -> tuple[float, float, float]:
    """(leading, trailing, longest inner pause) in seconds from VAD frame probabilities."""
    probs = np.asarray(probs, np.float32)
    speech = np.flatnonzero(probs >= cfg.speech_threshold)
    if len(probs) == 0:
        return 0.0, 0.0, 0.0
    if len(speech) == 0:
        d = len(probs) * FRAME_S
        return d, d, 0.0
    first, last = int(speech[0]), int(speech[-1])
    lead, trail = first * FRAME_S, (len(probs) - 1 - last) * FRAME_S
    inner = probs[first : last + 1] < cfg.silence_threshold
    longest = run = 0
    for q in inner:
        run = run + 1 if q else 0
        longest = max(longest, run)
    return lead, trail, longest * FRAME_S


def speaking_rate(text: str, speech_s: float) -> float:
    return text_bytes(text) / max(speech_s, 0.1)


def loudness_lufs(audio: np.ndarray, sample_rate: int) -> float:
    import pyloudnorm

    x = np.asarray(audio, np.float64)
    if len(x) < int(0.4 * sample_rate):  # BS.1770 needs one 400 ms block
        x = np.pad(x, (0, int(0.4 * sample_rate) - len(x) + 1))
    with np.errstate(divide="ignore"):
        value = pyloudnorm.Meter(sample_rate).integrated_loudness(x)
    return float(max(-70.0, value)) if math.isfinite(value) else -70.0


def snr_db(
    audio: np.ndarray, sample_rate: int, probs: np.ndarray | None = None, cfg: FeatureConfig = FeatureConfig()
) -> float:
    """Estimated SNR in dB (:func:`accord.pipeline.snr.snr_db`; ``cfg`` is kept for callers)."""
    return snr.snr_db(audio, sample_rate, probs)


def welch_psd(x: np.ndarray, sample_rate: int, nperseg: int) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.signal.welch`` with its defaults (periodic Hann, 50% overlap, per-segment mean
    removed, density scaling), as one batched FFT: scipy's generic STFT path costs more than
    the FFTs themselves on clip-sized inputs (~5x slower here)."""
    x = np.asarray(x, np.float64)
    step = nperseg - nperseg // 2  # scipy: noverlap = nperseg // 2
    segs = np.lib.stride_tricks.sliding_window_view(x, nperseg)[::step]
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(nperseg) / nperseg)
    spec = np.fft.rfft((segs - segs.mean(axis=1, keepdims=True)) * win, axis=1)
    p = np.square(spec.real) + np.square(spec.imag)
    p *= 1.0 / (sample_rate * np.sum(win**2))
    if nperseg % 2:
        p[:, 1:] *= 2
    else:
        p[:, 1:-1] *= 2
    return np.fft.rfftfreq(nperseg, 1.0 / sample_rate), p.mean(axis=0)


def bandwidth_hz(audio: np.ndarray, sample_rate: int, floor_db: float = 50.0) -> float:
    """Highest frequency within ``floor_db`` of the spectral peak (smoothed Welch PSD)."""
    x = np.asarray(audio, np.float64)
    if len(x) < 256 or not np.any(x):
        return 0.0
    f, psd = welch_psd(x, sample_rate, min(2048, len(x)))
    k = max(1, len(psd) // 128)
    smooth = np.convolve(psd, np.ones(k) / k, mode="same")
    db = 10 * np.log10(smooth + 1e-20)
    above = np.flatnonzero(db >= db.max() - floor_db)
    return float(f[above[-1]]) if len(above) else 0.0


def compute(
    audio_16k: np.ndarray,
    text: str,
    probs: np.ndarray | None,
    source_audio: np.ndarray | None = None,
    source_rate: int | None = None,
    cfg: FeatureConfig = FeatureConfig(),
) -> dict[str, float]:
    """Every feature of :data:`accord.core.clip.FEATURE_FIELDS` for one clip."""
    duration = len(audio_16k) / 16000
    lead, trail, pause = silences(probs, cfg) if probs is not None else (0.0, 0.0, 0.0)
    lead, trail = min(lead, duration), min(trail, duration)
    bw_audio, bw_rate = (
        (source_audio, source_rate) if source_audio is not None and source_rate else (audio_16k, 16000)
    )
    return {
        "speaking_rate": speaking_rate(text, duration - lead - trail),
        "loudness_lufs": loudness_lufs(audio_16k, 16000),
        "snr_db": snr_db(audio_16k, 16000, probs, cfg),
        "bandwidth_hz": bandwidth_hz(bw_audio, bw_rate, cfg.bandwidth_floor_db),
        "longest_pause_s": pause,
        "leading_silence_s": lead,
        "trailing_silence_s": trail,
    }
