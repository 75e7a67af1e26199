"""The sample raw bucket: long multi-sentence TTS recordings plus noise/music-only files.

Layout of a generated corpus directory::

    <dir>/bucket/<file>.<ext>   the audio files only (what ``accord ingest`` reads)
    <dir>/truth.json            {filename: truth entry}, see below
    <dir>/params.json           generator version + parameters (written last)

A truth entry holds ``engine``, ``voice``, ``language`` (None for non-speech files),
``has_speech``, ``background`` ("clean" | "noise" | "music"), ``background_detail``,
``snr_db``, ``format``, ``codec``, ``sample_rate``, ``channels``, ``duration_s``,
``decode_offset_s`` and ``sentences``: a list of ``{text, start_s, end_s, voice, language}``.
Sentence spans are where the synthesized speech really is (the engine's own leading and
trailing silence trimmed at -40 dB of the loudest 10 ms frame), in seconds of the decoded
file; ``decode_offset_s`` (measured by correlating the PyAV-decoded file with the source
mix, 0 for every codec here) has already been added.

Same generator version + (scale, seed) → same files: the engines are deterministic, every
random choice comes from a seeded generator and ffmpeg runs bitexact.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from accord.samples import encode, mixing, tts
from accord.samples.cache import build_once
from accord.samples.sentences import SENTENCES

GENERATOR_VERSION = 2
TRUTH_FILE = "truth.json"
AUDIO_DIR = "bucket"


@dataclass(frozen=True)
class FileSpec:
    """One file of the recipe. ``voice`` None means a background-only file of ``seconds``."""

    stem: str
    voice: str | None
    n_sentences: int
    background: str  # clean | white | pink | music
    snr_db: float
    fmt: str
    sample_rate: int
    channels: int
    seconds: float = 0.0


# ~3 minutes in 12 files; every engine, container, rate and channel layout appears.
RECIPE: tuple[FileSpec, ...] = (
    FileSpec("en_espeak_us", "espeak-ng:en-us", 4, "clean", 0, "wav16", 16000, 1),
    FileSpec("en_flite_slt", "flite:slt", 4, "clean", 0, "flac", 44100, 1),
    FileSpec("en_festival_kal", "festival:kal_diphone", 3, "white", 18, "mp3", 22050, 1),
    FileSpec("en_festival_slt", "festival:cmu_us_slt_arctic_hts", 4, "music", 15, "ogg_opus", 48000, 2),
    FileSpec("en_flite_awb", "flite:awb", 3, "pink", 16, "m4a_aac", 44100, 2),
    FileSpec("en_espeak_f3", "espeak-ng:en-us+f3", 3, "clean", 0, "wavf32", 48000, 2),
    FileSpec("en_flite_rms", "flite:rms", 3, "clean", 0, "webm_opus", 48000, 1),
    FileSpec("en_flite_kal", "flite:kal16", 3, "pink", 20, "wav16", 22050, 2),
    FileSpec("de_espeak", "espeak-ng:de", 3, "clean", 0, "flac", 22050, 1),
    FileSpec("es_espeak", "espeak-ng:es", 3, "music", 18, "mp3", 44100, 2),
    FileSpec("noise_only", None, 0, "pink", 0, "flac", 16000, 1, seconds=9.0),
    FileSpec("music_only", None, 0, "music", 0, "m4a_aac", 44100, 2, seconds=9.0),
)

LEAD_S = (0.3, 0.8)  # leading/trailing silence range
GAP_S = (0.3, 2.5)  # silence between sentences
NOISE_FLOOR_DBFS = -75.0  # "clean" files still get a faint floor, like any real recording


@dataclass
class Bucket:
    """A generated bucket: ``path`` is the audio folder, ``truth`` maps filename -> truth entry."""

    path: Path
    truth: dict[str, dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.path.parent

    def files(self) -> list[Path]:
        return [self.path / name for name in sorted(self.truth)]


def _background_kind(bg: str) -> str:
    return {"clean": "clean", "white": "noise", "pink": "noise", "music": "music"}[bg]


def _background(bg: str, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    if bg == "white":
        return mixing.white_noise(n, rng)
    if bg == "pink":
        return mixing.pink_noise(n, rng)
    if bg == "music":
        return mixing.tones(n, sr, rng)
    return mixing.white_noise(n, rng) * 10 ** (NOISE_FLOOR_DBFS / 20)


def _speech_track(
    spec: FileSpec, texts: list[str], rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Sentences separated by random silences at the file rate; returns (signal, sample spans)."""
    voice = tts.VOICES[spec.voice]
    sr = spec.sample_rate
    parts: list[np.ndarray] = [np.zeros(int(sr * rng.uniform(*LEAD_S)))]
    spans: list[tuple[int, int]] = []
    pos = len(parts[0])
    for i, text in enumerate(texts):
        x, tts_sr = tts.synthesize(voice, text)
        a, b = tts.trim_silence(x, tts_sr)
        seg = mixing.resample(x[a:b].astype(np.float64), tts_sr, sr)
        fade = min(len(seg) // 2, int(0.005 * sr))
        ramp = np.linspace(0.0, 1.0, fade)
        seg[:fade] *= ramp
        seg[len(seg) - fade :] *= ramp[::-1]
        seg *= 0.7 / (np.abs(seg).max() + 1e-12)
        spans.append((pos, pos + len(seg)))
        gap = int(sr * (rng.uniform(*GAP_S) if i < len(texts) - 1 else rng.uniform(*LEAD_S)))
        parts += [seg, np.zeros(gap)]
        pos += len(seg) + gap
    return np.concatenate(parts), spans


def _make_file(spec: FileSpec, name: str, texts: list[str], seed: list[int], out: Path) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    sr = spec.sample_rate
    voice = tts.VOICES[spec.voice] if spec.voice else None
    if voice is not None:
        speech, spans = _speech_track(spec, texts, rng)
    else:
        speech, spans = np.zeros(int(sr * spec.seconds)), []
    n = len(speech)
    active = np.zeros(n, dtype=bool)
    for a, b in spans:
        active[a:b] = True
    channels = []
    for c in range(spec.channels):
        gain = 1.0 if c == 0 else 0.85
        bg = _background(spec.background, n, sr, rng)
        if voice is None:
            channels.append(0.25 * bg / (np.abs(bg).max() + 1e-12) * gain)
        elif spec.background == "clean":
            channels.append(gain * speech + bg)
        else:
            channels.append(mixing.add_at_snr(gain * speech, bg, spec.snr_db, active))
    x_TC = np.stack(channels, axis=1)
    x_TC *= min(1.0, 0.95 / (np.abs(x_TC).max() + 1e-12)) * rng.uniform(0.6, 1.0)
    path = encode.write(x_TC, sr, out / name, spec.fmt)

    # Truth is in the decoded file's time base: measure the codec delay instead of assuming it.
    y_TC, dec_sr = encode.decode(path)
    ref_T = mixing.resample(x_TC.mean(axis=1), sr, dec_sr)
    lag = encode.lag_samples(ref_T, y_TC.mean(axis=1), max_lag=dec_sr // 10) if spans else 0
    offset = lag / dec_sr
    return {
        "engine": voice.engine if voice else None,
        "voice": voice.name if voice else None,
        "language": voice.language if voice else None,
        "has_speech": voice is not None,
        "background": _background_kind(spec.background),
        "background_detail": spec.background,
        "snr_db": float(spec.snr_db) if voice is not None and spec.background != "clean" else None,
        "format": spec.fmt,
        "codec": encode.FORMATS[spec.fmt].codec_args[1],
        "sample_rate": sr,
        "channels": spec.channels,
        "duration_s": round(len(y_TC) / dec_sr, 4),
        "decode_offset_s": round(offset, 4),
        "sentences": [
            {
                "text": text,
                "start_s": round(a / sr + offset, 4),
                "end_s": round(b / sr + offset, 4),
                "voice": voice.name,
                "language": voice.language,
            }
            for text, (a, b) in zip(texts, spans, strict=True)
        ],
    }


def _plan(scale: int, seed: int) -> list[tuple[FileSpec, str, list[str], list[int]]]:
    """Which texts go into which file; every copy of the recipe draws sentences without repeats."""
    plan = []
    for copy in range(scale):
        rng = np.random.default_rng([seed, copy])
        decks = {lang: list(rng.permutation(len(s))) for lang, s in SENTENCES.items()}
        for i, spec in enumerate(RECIPE):
            texts: list[str] = []
            if spec.voice:
                lang = tts.VOICES[spec.voice].language
                deck = decks[lang]
                if len(deck) < spec.n_sentences:
                    deck += list(rng.permutation(len(SENTENCES[lang])))
                texts = [SENTENCES[lang][deck.pop(0)] for _ in range(spec.n_sentences)]
            prefix = "" if copy == 0 else f"s{copy:02d}_"
            name = f"{prefix}{spec.stem}.{encode.FORMATS[spec.fmt].ext}"
            plan.append((spec, name, texts, [seed, copy, i]))
    return plan


def make_bucket(out_dir: str | Path | None = None, scale: int = 1, seed: int = 0) -> Bucket:
    """Generate (or reuse) the sample bucket; ``scale`` repeats the recipe with new sentences/seeds.

    With ``out_dir`` None the corpus goes to ``$ACCORD_CACHE/samples/bucket-<hash>``.
    """
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    params = {"kind": "bucket", "version": GENERATOR_VERSION, "scale": int(scale), "seed": int(seed)}

    def build(tmp: Path) -> None:
        audio = tmp / AUDIO_DIR
        audio.mkdir()
        plan = _plan(scale, seed)
        with ThreadPoolExecutor(max_workers=2) as pool:
            entries = list(pool.map(lambda p: _make_file(p[0], p[1], p[2], p[3], audio), plan))
        truth = {name: entry for (_, name, _, _), entry in zip(plan, entries, strict=True)}
        (tmp / TRUTH_FILE).write_text(json.dumps(truth, indent=1, ensure_ascii=False))

    root = build_once("bucket", params, build, out_dir)
    truth = json.loads((root / TRUTH_FILE).read_text())
    return Bucket(path=root / AUDIO_DIR, truth=truth, params=params)


def cut_sentences(
    bucket: Bucket,
    sr: int = 16000,
    language: str = "en",
    backgrounds: tuple[str, ...] = ("clean",),
    margin_s: float = 0.25,
    per_file: int | None = None,
) -> list[tuple[np.ndarray, str]]:
    """(mono float32 wav at ``sr``, text) per truth sentence, cut with ``margin_s`` of context.

    Files are visited in name order and sentences in time order, so the list is stable.
    """
    out: list[tuple[np.ndarray, str]] = []
    for name in sorted(bucket.truth):
        entry = bucket.truth[name]
        if entry["language"] != language or entry["background"] not in backgrounds:
            continue
        x_T = encode.load_mono(bucket.path / name, sr)
        for s in entry["sentences"][:per_file]:
            a = max(0, int((s["start_s"] - margin_s) * sr))
            b = min(len(x_T), int((s["end_s"] + margin_s) * sr))
            out.append((x_T[a:b].copy(), s["text"]))
    return out
