"""Learned correction of the rule-based SNR estimate (:mod:`accord.pipeline.snr`).

Why: the rules read babble over speech with pauses high, because silero calls babble-filled
pauses speech and a frame-power quantile of babble is a dip under its mean. Per-clip features
that tell babble from one talker (envelope modulation, spectral flatness of the quietest
frames, VAD statistics, spreads of the frame powers) feed a small model of ``truth - estimate``
fitted on the ``*-cal`` sets of bench/snr_eval.py by bench/snr_fit.py, which writes
``snr_model.json`` beside this file (plain numbers, no pickle). The correction is clamped to
``clamp_db`` and fades out over ``fade_db`` (clean clips keep the rules' estimate); without VAD
probabilities, or without the file, the rules' estimate stands.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

MODEL_PATH = Path(__file__).with_name("snr_model.json")
QUIET_SHARE = 0.1  # the quietest 10% of frames
MAX_QUIET_FRAMES = 48
FEATURES: tuple[str, ...] = (
    "s",
    "s_frames",
    "q_frames",
    "q",
    "spread_db",
    "lift_db",
    "run_drop_db",
    "run_p",
    "run_db",
    "q01_db",
    "q05_db",
    "q10_db",
    "q25_db",
    "q50_db",
    "q90_db",
    "p_mean",
    "p_speech",
    "p_pause",
    "p_quiet",
    "p_q10",
    "mod_lo_db",
    "mod_mid_db",
    "mod_hi_db",
    "env_std_db",
    "flat_quiet_db",
    "flat_all_db",
    "hf_quiet_db",
    "log_seconds",
)


def _db(v: float) -> float:
    return 10 * math.log10(max(v, 1e-30))


def _spectrum(frames: np.ndarray, k0: int) -> np.ndarray:
    """Mean Hann periodogram of ``frames`` [n, len] above bin ``k0``."""
    n = frames.shape[1]
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    spec = np.fft.rfft(frames * win, axis=1)
    return np.mean(spec.real**2 + spec.imag**2, axis=0)[k0:-1] + 1e-30


def _flatness_db(spec: np.ndarray) -> float:
    return _db(float(np.exp(np.mean(np.log(spec))) / np.mean(spec)))


def features(
    x: np.ndarray,
    sample_rate: int,
    power: np.ndarray,
    p: np.ndarray,
    srt: np.ndarray,
    noise: float,
    rules: dict[str, float],
) -> dict[str, float]:
    """The clip's features (FEATURES): the rules' terms, frame-power quantiles in dB over the
    rules' noise, VAD statistics, modulation of the amplitude envelope (one talker has more at
    2-8 Hz than babble) and spectral shape of the quietest frames (babble is speech-shaped)."""
    f = dict(rules)
    for name, qv in (("q01", 0.01), ("q05", 0.05), ("q10", 0.1), ("q25", 0.25), ("q50", 0.5), ("q90", 0.9)):
        f[f"{name}_db"] = _db(float(np.quantile(srt, qv)) / noise)
    order = np.argsort(power)
    n_quiet = max(1, int(QUIET_SHARE * len(power)))
    quiet = order[:n_quiet]
    f["p_mean"] = float(np.mean(p))
    f["p_speech"] = float(np.mean(p >= 0.5))
    f["p_pause"] = float(np.mean(p < 0.35))
    f["p_quiet"] = float(np.mean(p[quiet]))
    f["p_q10"] = float(np.quantile(p, 0.1))
    hop_s = 0.016
    env = np.sqrt(power)
    env = env / max(float(np.mean(env)), 1e-30) - 1.0
    mod = np.abs(np.fft.rfft(env)) ** 2 / max(len(env), 1) ** 2
    freqs = np.fft.rfftfreq(len(env), hop_s)
    for name, lo, hi in (("lo", 0.5, 2.0), ("mid", 2.0, 8.0), ("hi", 8.0, 16.0)):
        f[f"mod_{name}_db"] = _db(float(np.sum(mod[(freqs >= lo) & (freqs < hi)])))
    f["env_std_db"] = float(np.std(10 * np.log10(np.maximum(power, 1e-30))))
    n = int(0.032 * sample_rate)
    hop = int(hop_s * sample_rate)
    k0 = math.ceil(80.0 * n / sample_rate)
    if len(x) >= n:
        pick = np.sort(quiet[:MAX_QUIET_FRAMES])
        starts = np.minimum(pick * hop, len(x) - n)
        spec_q = _spectrum(x[starts[:, None] + np.arange(n)], k0)
        every = np.linspace(0, len(x) - n, min(len(power), 4 * MAX_QUIET_FRAMES)).astype(int)
        spec_a = _spectrum(x[every[:, None] + np.arange(n)], k0)
        hf = int(2000 * n / sample_rate) - k0
        f["flat_quiet_db"] = _flatness_db(spec_q)
        f["flat_all_db"] = _flatness_db(spec_a)
        f["hf_quiet_db"] = _db(float(np.sum(spec_q[hf:]) / np.sum(spec_q)))
    else:
        f["flat_quiet_db"] = f["flat_all_db"] = f["hf_quiet_db"] = 0.0
    f["log_seconds"] = math.log(max(len(x) / sample_rate, 0.1))
    return f


@lru_cache(maxsize=1)
def load(path: Path = MODEL_PATH) -> dict | None:
    """The fitted model (bench/snr_fit.py), or None when no file is there."""
    if not path.exists():
        return None
    model = json.loads(path.read_text())
    if tuple(model["features"]) != FEATURES:
        raise ValueError(f"{path}: features {model['features']} are not {FEATURES}")
    return model


def predict(model: dict, row: np.ndarray) -> float:
    """The model's raw output for one feature row (ordered as FEATURES)."""
    if model["kind"] == "ridge":
        z = (row - np.asarray(model["mean"])) / np.asarray(model["scale"])
        return float(model["intercept"] + z @ np.asarray(model["coef"]))
    z = row.astype(np.float32).tolist()  # sklearn's trees compare in single precision
    out = 0.0
    for feature, threshold, left, right, value in model["trees"]:
        i = 0
        while left[i] >= 0:
            i = left[i] if z[feature[i]] <= threshold[i] else right[i]
        out += value[i]
    return float(model["intercept"]) + model["rate"] * out


def correction(terms: dict[str, float], model: dict | None = None) -> float:
    """dB to add to the rules' estimate ``terms["s"]``: the model's output, clamped, faded out
    over ``fade_db`` (0 without a model)."""
    model = model if model is not None else load()
    if model is None:
        return 0.0
    row = np.array([terms[k] for k in FEATURES], np.float64)
    lo, hi = model["fade_db"]
    fade = min(1.0, max(0.0, (hi - terms["s"]) / (hi - lo)))
    if fade <= 0:
        return 0.0
    lo, hi = model["clamp_db"]
    return fade * min(hi, max(lo, predict(model, row)))
