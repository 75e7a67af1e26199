"""Backgrounds for the sample bucket: white/pink noise and music-like harmonic tones.

All generators take an explicit ``numpy.random.Generator`` so the bucket is reproducible.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import resample_poly


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(n)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise by shaping white noise in the frequency domain (unit variance)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n)
    return x / (x.std() + 1e-12)


def tones(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Music-like signal: a random melody of harmonic notes (1/k partials) with attack/decay envelopes."""
    out = np.zeros(n)
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12])  # major scale, semitones above the root
    root = 220.0 * 2 ** (rng.integers(0, 12) / 12)
    pos = 0
    while pos < n:
        dur = int(sr * rng.uniform(0.2, 0.6))
        m = min(dur, n - pos)
        t = np.arange(m) / sr
        f0 = root * 2 ** (rng.choice(scale) / 12) * rng.choice([0.5, 1.0])
        note = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6) if f0 * k < sr / 2)
        attack = np.minimum(1.0, t / 0.02)
        env = attack * np.exp(-t / (0.4 * dur / sr))
        out[pos : pos + m] += note * env
        # a sustained bass note under every other bar keeps the signal dense like real music
        if rng.random() < 0.5:
            out[pos : pos + m] += 0.5 * np.sin(2 * np.pi * root / 2 * t) * attack
        pos += dur
    return out / (out.std() + 1e-12)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling along axis 0 (exact rational ratio)."""
    if sr_in == sr_out:
        return x
    g = np.gcd(sr_in, sr_out)
    return resample_poly(x, sr_out // g, sr_in // g, axis=0)


def add_at_snr(speech: np.ndarray, background: np.ndarray, snr_db: float, active: np.ndarray) -> np.ndarray:
    """``speech + g * background`` with g chosen so speech power over ``active`` is ``snr_db`` above it."""
    p_speech = np.mean(speech[active] ** 2) if active.any() else np.mean(speech**2)
    p_bg = np.mean(background**2) + 1e-20
    g = np.sqrt(p_speech / (p_bg * 10 ** (snr_db / 10)))
    return speech + g * background
