"""Slaney mel filters and the centred power mel spectrogram, as librosa computes them by default
(``librosa.feature.melspectrogram``: periodic Hann, zero-padded centred frames, power 2,
``htk=False``, ``norm="slaney"``), in numpy with scipy's FFT (librosa's too: numpy's own is ~7x
slower on a batch of frames).

The models that were trained on librosa's features (DNSMOS P.808, resemblyzer's GE2E) get them
from here: librosa's first feature call imports numba, ~1.6 s of CPU in every worker process
that runs one of them (issue #28). The tests compare both with librosa itself.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

MEL_BREAK_HZ = 1000.0  # the Slaney scale is linear below, logarithmic above
MEL_PER_HZ = 3.0 / 200.0
MEL_LOG_STEP = np.log(6.4) / 27.0


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Slaney mel scale (librosa's default, ``htk=False``): linear below 1 kHz, log above."""
    f = np.asarray(f, np.float64)
    linear = f * MEL_PER_HZ
    log_part = MEL_BREAK_HZ * MEL_PER_HZ + np.log(np.maximum(f, 1e-10) / MEL_BREAK_HZ) / MEL_LOG_STEP
    return np.where(f >= MEL_BREAK_HZ, log_part, linear)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    m = np.asarray(m, np.float64)
    brk = MEL_BREAK_HZ * MEL_PER_HZ
    return np.where(m >= brk, MEL_BREAK_HZ * np.exp(MEL_LOG_STEP * (m - brk)), m / MEL_PER_HZ)


@lru_cache(maxsize=8)
def filterbank(rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """``[n_mels, n_fft // 2 + 1]`` triangular filters from 0 Hz to Nyquist, Slaney-normalised:
    ``librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels)`` (float64, read-only)."""
    fft_hz = np.fft.rfftfreq(n_fft, 1.0 / rate)
    mel_hz = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(rate / 2), n_mels + 2))
    fdiff = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]
    weights.flags.writeable = False
    return weights


@lru_cache(maxsize=8)
def hann(n: int) -> np.ndarray:
    """Periodic Hann window (``scipy.signal.get_window("hann", n)``, librosa's default)."""
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    w.flags.writeable = False
    return w


def power_mel(
    x_BT: np.ndarray, rate: int, n_fft: int, hop: int, n_mels: int, dtype: type = np.float64
) -> np.ndarray:
    """Power mel spectrogram of each row, ``[B, F, n_mels]`` (frames first: librosa's output
    transposed), ``F = 1 + (T + 2 * (n_fft // 2) - n_fft) // hop``: frames centred on
    multiples of ``hop``, ``n_fft // 2`` zeros padded at both ends. ``dtype`` float32 computes as
    librosa does on float32 audio (complex64 FFT), in about half the time."""
    import scipy.fft  # here: the job's driver imports this module's users, never their features

    x_BT = np.asarray(x_BT, dtype)
    pad = n_fft // 2
    padded_BT = np.pad(x_BT, ((0, 0), (pad, pad)))
    frames_BFN = np.lib.stride_tricks.sliding_window_view(padded_BT, n_fft, axis=1)[:, ::hop]
    spec_BFK = scipy.fft.rfft(frames_BFN * hann(n_fft).astype(dtype), axis=-1)
    power_BFK = spec_BFK.real**2 + spec_BFK.imag**2
    return power_BFK @ filterbank(rate, n_fft, n_mels).T.astype(dtype)
