"""Blind per-clip SNR: active speech level over noise power, right on speech with or without pauses.

Why not speech frames over pause frames: a clip of fluent speech has no pauses, so the frames a
VAD calls non-speech are weak speech, and clean conversational clips came out at -10 dB (issue
#20). Why not WADA-SNR (Kim & Stern 2008), minimum statistics (Martin 2001) or MMSE-SPP noise
tracking (Gerkmann & Hendriks 2012): measured on ``bench/snr_eval.py`` they read clean
continuous speech at 10-25 dB, because their speech model or tracking window assumes pauses.

The estimate here is a quantile noise floor (in the spirit of Stahl et al. 2000, quantile-based
noise estimation) whose quantile follows the SNR, applied to the powers of 32 ms frames
(16 ms hop, 80 Hz high-pass: rumble and DC are no masker of speech):

- fluent speech still has its quietest frames (stop closures, weak fricatives), 36 dB under its
  active level at the 1st percentile and 7 dB under at the 30th (``SPEECH_DB``, measured on
  clean pause-free speech of the calibration set). At SNR ``s`` the quantile ``q`` whose speech
  lies ``MARGIN_DB`` under the noise is still noise: iterate ``s -> q -> noise -> s``;
- a low quantile of babble is a babble dip, far under its mean; a high one is near it. So the
  quantile rising as the SNR falls is also what keeps 6-talker babble within a few dB;
- when the VAD finds pauses, the quantile rises to the 70th percentile of the pause frames (a
  babble dip is not its mean), but only through frames within ``min(PAUSE_DB, s / 3)`` of the
  floor: louder "pauses" are missed speech, and a wrong VAD cannot drag the estimate down by
  more than that;
- a quantile of a fluctuating noise sits under its mean: the spread of the frames under the
  quantile, ``D = Q(q) / Q(q/4)`` in dB (white noise ~0.4, 6-talker babble ~2.6), raises the
  noise by ``SPREAD_GAIN`` dB per dB of ``D`` over ``SPREAD_FROM_DB`` (at most
  ``SPREAD_MAX_DB``) while the frames say under 25 dB (above, the frames under the quantile
  are speech, spread by the speech: clean clips read up to 7 dB lower with it). Measured on the
  calibration sets: babble over speech with pauses read +1.8 dB high, because the VAD calls
  babble-filled pauses speech (p of true pauses: median 0.7 at 0 dB, 0.5 at 10 dB), so the
  pause refinement above rarely engages and the quantile is a babble dip; in continuous speech
  the quantile's frames hold speech too, which hid it. About half the gap is closed: a larger
  gain pulls continuous speech low (its quantile frames are spread by speech, not noise);
- with VAD probabilities, the quietest 160 ms stretches (smoothed frame power within 3 dB of its
  5th percentile) are averaged whole, babble peaks included: in a clip with pauses that is the
  noise's mean, not a dip (on the calibration sets -0.8 to +0.5 dB of the truth from 0 to 30 dB,
  against -5 to -1 for frame quantiles). In speech without pauses those stretches are weak speech
  (8 dB over the noise at 20 dB SNR), so they lower the SNR by at most ``RUN_MAX_DB``, weighted
  by how much the VAD doubts them (mean p 0.4 -> full, 0.7 -> none; babble-filled pauses ~0.4 at
  >= 15 dB, ~0.7 at 0-10 dB, where they stay unused, fluent speech ~0.9) and by the spread ``D``
  (none for white noise). Held out, babble over speech with pauses: real +2.5 -> +2.1 dB (60 ->
  64% within 3 dB), synthetic +1.8 -> +1.2 dB (74 -> 87%); every other noise and speech kind
  within 0.1 dB and 1 point of before. Tried and measured worse on the calibration sets: the
  mean of the lowest frames at the true pause share (-1 to -2 dB: selecting frames by power
  keeps babble's dips), longer smoothing or a wider margin without the VAD weight (continuous
  speech -3 to -8 dB at 10-20 dB SNR);
- when the frames alone say >= 25 dB, a per-bin floor (1st percentile over time of the
  periodogram, smoothed over 9 bins) is consulted too: speech rarely leaves a whole frame quiet,
  but each frequency bin is quiet now and then, so it sees deeper into clean speech. It adds half
  its excess over the frame estimate, at most ``BIN_FLOOR_MAX_GAIN_DB``: babble's bins have deep
  dips too, and it read babble at 25-30 dB 2 dB high.

- with VAD probabilities, a learned correction (:mod:`accord.pipeline.snr_model`, fitted by
  bench/snr_fit.py on the ``*-cal`` sets only: gradient-boosted trees, 200 of depth 3, on 28
  per-clip features: the terms above, frame-power quantiles over the noise, VAD statistics,
  envelope modulation, spectral flatness of the quietest frames) lowers the estimate by up to
  6 dB. It only lowers: babble dips read high, and a symmetric correction raised a clip with
  45% pauses (more than any calibration clip) by 2.5 dB. Cross-validated over recordings on
  the calibration sets, babble over speech with pauses 84 -> 91% within 3 dB; held out, real
  +2.1 -> +1.4 dB (64 -> 77%), synthetic +1.2 -> +0.4 dB (87 -> 92%), continuous babble real
  85 -> 90%, no other share lower, clean studio speech unchanged (>= 28.8 dB). Babble for the
  fit is built with 6 and 4 talkers (4: deeper dips, as the test pool has).

Speech power is the mean power of the VAD speech frames (p >= 0.5) less the noise; without VAD
probabilities, of the frames whose excess over the noise is within 15.9 dB of the mean excess
(P.56's margin). Calibrated on the ``*-cal`` sets of bench/snr_eval.py only (docs/ingest.md has
the held-out numbers). The SNR is clipped to [-10, 80] dB; a clip with digital silence in its
quietest frames reads 80. About 5-10 ms per 10 s clip on one core.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from accord.pipeline import snr_model

FRAME_S = 0.032
HOP_S = 0.016
HIGHPASS_HZ = 80.0
MIN_DB, MAX_DB = -10.0, 80.0
MARGIN_DB = 10.0  # speech in the noise quantile lies this far under the noise
P56_MARGIN_DB = 15.9
PAUSE_DB = 10.0  # VAD pauses count as noise only within this (and s * PAUSE_CAP) of the floor
PAUSE_CAP = 1 / 3
PAUSE_SHARE = 0.7  # the 70th percentile of the pause frames
MAX_Q = 0.25
SPEECH_P, PAUSE_P = 0.5, 0.35  # silero thresholds, as in FeatureConfig
BIN_FLOOR_FROM_DB = 25.0
BIN_FLOOR_MAX_GAIN_DB = 2.0
SPREAD_FROM_DB, SPREAD_GAIN, SPREAD_MAX_DB = 1.5, 0.5, 3.0  # noise += GAIN * (D - FROM) dB, D = Q(q) / Q(q/4)
RUN_FRAMES, RUN_Q, RUN_DB = 9, 0.05, 3.0  # 160 ms windows within 3 dB of their 5th percentile
RUN_P, RUN_P_WIDTH, RUN_MAX_DB = 0.7, 0.3, 3.0  # full weight at mean p <= 0.4, none at >= 0.7
SPREAD_GATE_FROM_DB = 1.0  # the pause runs count in full from D >= 2 dB (white ~0.4, babble ~2.6)
BIN_FLOOR_BIAS = 10 ** (-5.6 / 10)  # 1st percentile of the 9-bin smoothed periodogram of white noise

# Frame-power quantiles; level of each in clean pause-free speech, dB re its P.56 active level
# (median over the real-cal and synth-cal clips of bench/snr_eval.py); level in white noise, dB
# re its mean power (the quantile's own bias for stationary noise).
QUANTILES = np.array([0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5])
SPEECH_DB = np.array([-35.5, -32.0, -27.5, -23.5, -21.0, -18.0, -14.0, -11.5, -9.0, -7.0, -4.5, -2.0])
WHITE_DB = np.array([-0.64, -0.56, -0.52, -0.45, -0.4, -0.35, -0.28, -0.23, -0.19, -0.14, -0.07, -0.01])


def _highpass(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    from scipy.signal import butter, sosfilt  # here: importing scipy.signal costs 0.6 s per process

    x = np.asarray(audio, np.float64)
    if not len(x):
        return x
    sos = butter(2, HIGHPASS_HZ, "highpass", fs=sample_rate, output="sos")
    return sosfilt(sos, x - x.mean())


def frame_powers(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mean power of 32 ms frames at a 16 ms hop (one frame for a shorter ``x``)."""
    n, hop = int(FRAME_S * sample_rate), int(HOP_S * sample_rate)
    if len(x) < n:
        return np.array([float(np.mean(x * x)) if len(x) else 0.0])
    c = np.concatenate([[0.0], np.cumsum(x * x)])
    starts = np.arange(0, len(x) - n + 1, hop)
    return (c[starts + n] - c[starts]) / n


def _per_frame(probs: np.ndarray, n: int, hop_ratio: int) -> np.ndarray:
    """VAD probabilities (one per 32 ms) spread over ``n`` frames at a 16 ms hop."""
    p = np.repeat(np.asarray(probs, np.float64), hop_ratio)[:n]
    return np.pad(p, (0, n - len(p)), mode="edge") if len(p) < n else p


def _bin_floor_noise(x: np.ndarray, sample_rate: int, n: int) -> float:
    """Noise power from the 1st percentile over time of the 9-bin smoothed periodogram (Hann,
    50% overlap; single precision and a partial sort: this runs for every clean clip)."""
    from scipy.fft import rfft
    from scipy.ndimage import uniform_filter1d

    if len(x) < 2 * n:
        return math.inf
    frames = np.lib.stride_tricks.sliding_window_view(x.astype(np.float32), n)[:: n // 2]
    win = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)
    spec = rfft(frames * win, axis=1)
    k0 = math.ceil(HIGHPASS_HZ * n / sample_rate)
    p = np.square(spec.real[:, k0:-1]) + np.square(spec.imag[:, k0:-1])
    smooth = uniform_filter1d(p, 9, axis=1, mode="nearest").T
    pos = 0.01 * (smooth.shape[1] - 1)  # np.quantile's linear interpolation
    k = int(pos)
    part = np.partition(smooth, (k, min(k + 1, smooth.shape[1] - 1)), axis=1)
    floor = part[:, k] + (pos - k) * (part[:, min(k + 1, smooth.shape[1] - 1)] - part[:, k])
    power = 2.0 * float(floor.astype(np.float64).sum()) / (n * float(np.sum(win.astype(np.float64) ** 2)))
    return power / BIN_FLOOR_BIAS


def _pause_runs(power: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(mean power, mean VAD p) of the quietest 160 ms stretches: smoothed frame power within
    RUN_DB of its RUN_Q quantile."""
    from scipy.ndimage import uniform_filter1d

    smooth = uniform_filter1d(power, RUN_FRAMES, mode="nearest")
    quiet = smooth <= float(np.quantile(smooth, RUN_Q)) * 10 ** (RUN_DB / 10)
    return float(np.mean(power[quiet])), float(np.mean(p[quiet]))


def _pause_run_drop(
    run_power: float, run_p: float, spread_db: float, s: float, snr_at: Callable[[float], float]
) -> float:
    """dB to take off ``s`` for the noise of the quietest 160 ms stretches (babble in pauses).

    Whole stretches are averaged, babble peaks included, so they are not a dip; but in speech
    without pauses they are weak speech, so they count only as far as the VAD doubts them
    (their mean p), only for a fluctuating noise (``spread_db``) and by at most RUN_MAX_DB."""
    weight = min(1.0, max(0.0, (RUN_P - run_p) / RUN_P_WIDTH))
    weight *= min(1.0, max(0.0, spread_db - SPREAD_GATE_FROM_DB))
    return weight * min(RUN_MAX_DB, max(0.0, s - snr_at(run_power)))


def snr_db(audio: np.ndarray, sample_rate: int, probs: np.ndarray | None = None) -> float:
    """SNR in dB of one clip: active speech power over noise power (see the module docstring).

    ``probs``: silero-vad probabilities of its 32 ms frames (``vad_probs``), optional.
    """
    s, terms = rule_estimate(audio, sample_rate, probs)
    if terms is not None:
        s += snr_model.correction(terms)
    return float(min(MAX_DB, max(MIN_DB, s)))


def rule_estimate(
    audio: np.ndarray, sample_rate: int, probs: np.ndarray | None = None
) -> tuple[float, dict[str, float] | None]:
    """The hand-calibrated estimate (dB, clipped) and, when ``probs`` are given and the clip is
    not digital silence, its intermediate terms and the clip's features for the learned
    correction (:mod:`accord.pipeline.snr_model`)."""
    x = _highpass(audio, sample_rate)
    power = frame_powers(x, sample_rate)
    srt = np.sort(power)
    hop_ratio = max(1, round(FRAME_S / HOP_S))
    p = _per_frame(probs, len(power), hop_ratio) if probs is not None and len(probs) else None
    speech_frames = p >= SPEECH_P if p is not None else None

    def noise_at(q: float) -> float:
        return float(np.quantile(srt, q)) / 10 ** (float(np.interp(q, QUANTILES, WHITE_DB)) / 10)

    def snr_at(noise: float) -> float:
        if speech_frames is not None:
            act = speech_frames
        else:  # P.56's rule on frames: speech power over 15.9 dB under the mean speech power
            act = power - noise > max(float(np.mean(power)) - noise, 0.0) * 10 ** (-P56_MARGIN_DB / 10)
        sp = float(np.mean(power[act])) if act.any() else float(np.mean(power))
        return 10 * math.log10(max(sp - noise, 1e-20) / noise)

    q, s = float(QUANTILES[0]), MAX_DB
    for _ in range(len(QUANTILES)):
        noise = noise_at(q)
        if noise <= 0:
            return MAX_DB, None
        s = snr_at(noise)
        limit = -(max(s, 0.0) + MARGIN_DB)  # the loudest quantile whose speech lies this low
        ok = np.flatnonzero(limit >= SPEECH_DB)
        new = float(QUANTILES[ok[-1]]) if len(ok) else float(QUANTILES[0])
        if new == q:
            break
        q = new
    s_frames, q_frames = s, q
    if probs is not None and len(probs):
        pauses = float(np.mean(np.asarray(probs) < PAUSE_P))
        cap_db = min(PAUSE_DB, max(s, 0.0) * PAUSE_CAP)
        cap = np.searchsorted(srt, noise_at(q) * 10 ** (cap_db / 10), side="right") / len(srt)
        if min(pauses * PAUSE_SHARE, MAX_Q, cap) > q:
            q = min(pauses * PAUSE_SHARE, MAX_Q, cap)
    spread_db = 10 * math.log10(
        max(float(np.quantile(srt, q)), 1e-30) / max(float(np.quantile(srt, q / 4)), 1e-30)
    )
    lift_db = min(SPREAD_MAX_DB, SPREAD_GAIN * max(0.0, spread_db - SPREAD_FROM_DB))
    if s_frames >= BIN_FLOOR_FROM_DB:  # the frames under the quantile are speech: its spread, not the noise's
        lift_db = 0.0
    noise = noise_at(q) * 10 ** (lift_db / 10)
    s = snr_at(noise)
    if s_frames >= BIN_FLOOR_FROM_DB:
        bin_noise = _bin_floor_noise(x, sample_rate, int(FRAME_S * sample_rate))
        if bin_noise <= 0:
            return MAX_DB, None
        s += min(BIN_FLOOR_MAX_GAIN_DB, max(0.0, snr_at(bin_noise) - s) / 2)
    if p is None:
        return float(min(MAX_DB, max(MIN_DB, s))), None
    run_power, run_p = _pause_runs(power, p)
    drop = _pause_run_drop(run_power, run_p, spread_db, s, snr_at)
    s = float(min(MAX_DB, max(MIN_DB, s - drop)))
    rules = {
        "s": s,
        "s_frames": s_frames,
        "q_frames": q_frames,
        "q": q,
        "spread_db": spread_db,
        "lift_db": lift_db,
        "run_drop_db": drop,
        "run_p": run_p,
        "run_db": 10 * math.log10(max(run_power, 1e-30) / noise),
    }
    return s, snr_model.features(x, sample_rate, power, p, srt, noise, rules)


def _hangover(above: np.ndarray, hang: int) -> np.ndarray:
    cs = np.concatenate([[0], np.cumsum(above, dtype=np.int64)])
    idx = np.arange(len(above))
    return (cs[idx + 1] - cs[np.maximum(0, idx - hang)]) > 0


def active_mask(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """ITU-T P.56 method B speech activity per sample: the envelope (two 30 ms smoothers of
    ``|x|``) within 200 ms after exceeding the threshold that lies 15.9 dB under the active
    level. The truth of the SNR benchmark and tests; ~15 ms per second of audio."""
    from scipy.signal import lfilter

    x = np.asarray(x, np.float64)
    if not len(x) or not np.any(x):
        return np.zeros(len(x), bool)
    g = math.exp(-1.0 / (sample_rate * 0.03))
    env = lfilter([(1 - g) ** 2], [1, -2 * g, g * g], np.abs(x))
    hang = int(0.2 * sample_rate)
    sq = x * x
    top = 20 * math.log10(float(env.max()))
    prev_c = prev_d = None
    for c in np.arange(top, top - 120, -1.0):
        mask = _hangover(env >= 10 ** (c / 20), hang)
        if not mask.any():
            continue
        d = 10 * math.log10(max(float(sq[mask].mean()), 1e-30)) - c
        if d >= P56_MARGIN_DB:
            if prev_c is not None and prev_d is not None and d > prev_d:
                c = c + (d - P56_MARGIN_DB) / (d - prev_d) * (prev_c - c)
                mask = _hangover(env >= 10 ** (c / 20), hang)
            return mask
        prev_c, prev_d = c, d
    return np.ones(len(x), bool)


def active_level(x: np.ndarray, sample_rate: int) -> float:
    """Mean power of ``x`` over its P.56 active samples (0 for silence)."""
    mask = active_mask(x, sample_rate)
    return float(np.mean(np.square(np.asarray(x, np.float64)[mask]))) if mask.any() else 0.0
