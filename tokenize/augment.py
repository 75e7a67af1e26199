"""Degraded copies of a clip for speaker-embedding augmentation, deterministic per clip id.

Training samples a degraded prompt's embedding now and then so the model does not copy the
recording conditions of the prompt. Each augmentation is a pure function of the waveform and a
``numpy`` generator seeded from ``(clip_id, name)``: the same clip always gets the same copy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import signal

SAMPLE_RATE = 16000  # the default: ECAPA's rate (the release's voice embedding runs at 24 kHz)
TELEPHONE_RATE = 8000
AUGMENTATIONS: tuple[str, ...] = ("noise", "music", "codec", "reverb")


@dataclass(frozen=True)
class AugmentConfig:
    names: tuple[str, ...] = AUGMENTATIONS
    noise_snr_db: tuple[float, float] = (5.0, 20.0)
    music_snr_db: tuple[float, float] = (5.0, 15.0)
    codec_cutoff_hz: tuple[float, float] = (3000.0, 3800.0)  # telephone band + 8-bit mu-law
    reverb_rt60_s: tuple[float, float] = (0.2, 0.8)


def rng_for(clip_id: str, name: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{clip_id}\0{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _mix_at_snr(x: np.ndarray, n: np.ndarray, snr_db: float) -> np.ndarray:
    px = float(np.mean(x**2)) + 1e-10
    pn = float(np.mean(n**2)) + 1e-10
    return x + n * np.sqrt(px / (pn * 10 ** (snr_db / 10)))


def add_noise(x: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig, sr: int) -> np.ndarray:
    """White noise, spectrally tilted toward pink by a random first-order low-pass."""
    n = rng.standard_normal(len(x))
    a = rng.uniform(0.0, 0.95)
    n = signal.lfilter([1.0 - a], [1.0, -a], n)
    return _mix_at_snr(x, n, rng.uniform(*cfg.noise_snr_db))


def add_music(x: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig, sr: int) -> np.ndarray:
    """Synthetic music: chords of harmonic notes with decaying envelopes, changing every beat."""
    t = np.arange(len(x)) / sr
    beat = rng.uniform(0.3, 0.7)
    music = np.zeros(len(x))
    for start in np.arange(0.0, t[-1] + beat if len(t) else 0.0, beat):
        i0 = int(start * sr)
        decay = rng.uniform(0.2, 0.8)
        seg = t[i0 : i0 + int(5 * decay * sr)] - start  # notes ring for 5 decay times
        env = np.exp(-seg / decay)
        root = 110.0 * 2 ** (rng.integers(0, 24) / 12)
        for interval in (0, 4, 7):
            f = root * 2 ** (interval / 12)
            for h in (1, 2, 3):
                music[i0 : i0 + len(seg)] += env * np.sin(2 * np.pi * f * h * seg) / h
    return _mix_at_snr(x, music, rng.uniform(*cfg.music_snr_db))


def codec_degrade(x: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig, sr: int) -> np.ndarray:
    """Telephone-style compression: low-pass at 3–3.8 kHz, 8 kHz resampling, 8-bit mu-law."""
    sos = signal.butter(8, rng.uniform(*cfg.codec_cutoff_hz), fs=sr, output="sos")
    y = signal.sosfiltfilt(sos, x) if len(x) > 60 else x
    y = signal.resample_poly(signal.resample_poly(y, TELEPHONE_RATE, sr), sr, TELEPHONE_RATE)[: len(x)]
    peak = float(np.max(np.abs(y))) + 1e-9
    mu = 255.0
    q = np.sign(y / peak) * np.log1p(mu * np.abs(y / peak)) / np.log1p(mu)
    q = np.round((q + 1) / 2 * mu) / mu * 2 - 1
    return np.sign(q) * np.expm1(np.abs(q) * np.log1p(mu)) / mu * peak


def add_reverb(x: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig, sr: int) -> np.ndarray:
    """Convolution with a synthetic RIR: direct path + exponentially decaying noise tail."""
    rt60 = rng.uniform(*cfg.reverb_rt60_s)
    n = int(rt60 * sr)
    t = np.arange(n) / sr
    rir = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # -60 dB at rt60
    rir[: int(0.003 * sr)] = 0.0
    rir[0] = 1.0 / rng.uniform(0.2, 0.6)  # direct-to-reverberant ratio
    y = signal.fftconvolve(x, rir)[: len(x)]
    return y * (np.max(np.abs(x)) + 1e-9) / (np.max(np.abs(y)) + 1e-9)


AUGMENT_FNS: dict[str, Callable[[np.ndarray, np.random.Generator, AugmentConfig, int], np.ndarray]] = {
    "noise": add_noise,
    "music": add_music,
    "codec": codec_degrade,
    "reverb": add_reverb,
}


def augment(
    x: np.ndarray, clip_id: str, cfg: AugmentConfig | None = None, sample_rate: int = SAMPLE_RATE
) -> list[np.ndarray]:
    """One degraded copy per ``cfg.names`` of ``x`` at ``sample_rate`` (float32, same length)."""
    cfg = cfg or AugmentConfig()
    out = []
    for name in cfg.names:
        if name not in AUGMENT_FNS:
            raise KeyError(f"unknown augmentation {name!r}; known: {sorted(AUGMENT_FNS)}")
        y = AUGMENT_FNS[name](x.astype(np.float64), rng_for(clip_id, name), cfg, sample_rate)
        out.append(np.clip(y, -1.0, 1.0).astype(np.float32))
    return out
