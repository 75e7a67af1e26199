"""The malformed-input corpus: broken files, each with the error kind the pipeline must report.

Error kinds (the ``error_type`` strings of the errors manifest, shared with the pipeline):

- ``empty_file``   the file has 0 bytes.
- ``decode_error`` a recognised audio container whose stream fails to decode (a FLAC cut mid-stream).
- ``not_audio``    no audio in the bytes: the first bytes carry no audio container signature
                   (RIFF/WAVE, fLaC, OggS, ID3 or MPEG sync, ftyp, EBML, ...) or the container has no
                   audio stream (a PNG, random bytes), whatever the file extension says.
- ``nan_samples``  decoded samples contain NaN or Inf.
- ``empty_audio``  a valid header with 0 audio frames.
- ``no_speech``    decodes fine but VAD finds no speech (10 minutes of silence and faint noise).
- ``dangling_symlink`` a name like an audio file that links to nothing.
- ``not_a_file``   a directory named like an audio file.

``expected[name] is None`` means the file must be processed into clips and never lost: valid
speech with a misleading extension (MP3 bytes named ``.wav``), a 384 kHz WAV, a good FLAC, and
a symlink to that FLAC.
Their sentences are in ``Malformed.speech`` (same entry format as the bucket truth).

Layout: ``<dir>/malformed/<files>``, ``<dir>/expected.json``, ``<dir>/speech.json``, ``<dir>/params.json``.
"""

from __future__ import annotations

import json
import struct
import wave
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from accord.samples import encode, mixing, tts
from accord.samples.cache import build_once

EMPTY_FILE = "empty_file"
DECODE_ERROR = "decode_error"
NOT_AUDIO = "not_audio"
NAN_SAMPLES = "nan_samples"
EMPTY_AUDIO = "empty_audio"
NO_SPEECH = "no_speech"
DANGLING_SYMLINK = "dangling_symlink"
NOT_A_FILE = "not_a_file"
ERROR_KINDS: tuple[str, ...] = (
    EMPTY_FILE, DECODE_ERROR, NOT_AUDIO, NAN_SAMPLES, EMPTY_AUDIO, NO_SPEECH, DANGLING_SYMLINK, NOT_A_FILE,
)  # fmt: skip

GENERATOR_VERSION = 3
AUDIO_DIR = "malformed"

EXPECTED: dict[str, str | None] = {
    "empty.wav": EMPTY_FILE,
    "truncated.flac": DECODE_ERROR,
    "image.flac": NOT_AUDIO,
    "random_bytes.flac": NOT_AUDIO,
    "nan_samples.wav": NAN_SAMPLES,
    "zero_frames.wav": EMPTY_AUDIO,
    "long_silence.flac": NO_SPEECH,
    "mp3_bytes.wav": None,
    "high_rate_384k.wav": None,
    "good.flac": None,
    "linked.flac": None,  # a symlink to good.flac: read through the link, never skipped
    "dangling.wav": DANGLING_SYMLINK,
    "folder.wav": NOT_A_FILE,
}

TEXTS = {
    "good.flac": (
        "The lamp on the desk was still warm when she came back.",
        "Outside, the street was empty.",
    ),
    "mp3_bytes.wav": ("Every file with real speech in it must reach the manifest.",),
    "high_rate_384k.wav": ("This recording was made at a very high sample rate.",),
    "truncated.flac": ("Only the first half of this file was ever written to disk.", "The rest is gone."),
    "nan_samples.wav": ("A broken converter filled part of this file with invalid numbers.",),
}


@dataclass
class Malformed:
    """``path`` is the folder of files; ``expected`` maps filename -> error kind (None: must succeed)."""

    path: Path
    expected: dict[str, str | None]
    speech: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _speech(name: str, voice: tts.Voice, sr: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Sentences with 0.5 s of silence around each, at ``sr``; returns (mono signal, truth sentences)."""
    pad = np.zeros(int(0.5 * sr))
    parts, sentences, pos = [pad], [], len(pad)
    for text in TEXTS[name]:
        x, tts_sr = tts.synthesize(voice, text)
        a, b = tts.trim_silence(x, tts_sr)
        seg = mixing.resample(x[a:b].astype(np.float64), tts_sr, sr)
        seg *= 0.6 / (np.abs(seg).max() + 1e-12)
        sentences.append(
            {
                "text": text,
                "start_s": round(pos / sr, 4),
                "end_s": round((pos + len(seg)) / sr, 4),
                "voice": voice.name,
                "language": voice.language,
            }
        )
        parts += [seg, pad]
        pos += len(seg) + len(pad)
    return np.concatenate(parts), sentences


def _png(rng: np.random.Generator) -> bytes:
    """A valid 16x16 RGB PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + rng.integers(0, 256, 48, dtype=np.uint8).tobytes() for _ in range(16))
    ihdr = struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def _build(out: Path) -> dict[str, list[dict[str, Any]]]:
    rng = np.random.default_rng(1234)
    speech: dict[str, list[dict[str, Any]]] = {}
    slt, us = tts.VOICES["flite:slt"], tts.VOICES["espeak-ng:en-us"]

    (out / "empty.wav").write_bytes(b"")

    x, speech["good.flac"] = _speech("good.flac", slt, 16000)
    encode.write(x, 16000, out / "good.flac", "flac")
    (out / "linked.flac").symlink_to("good.flac")  # relative: the corpus can move
    speech["linked.flac"] = speech["good.flac"]
    (out / "dangling.wav").symlink_to("gone/dangling.wav")
    (out / "folder.wav").mkdir()

    x, speech["mp3_bytes.wav"] = _speech("mp3_bytes.wav", us, 44100)
    encode.write(x, 44100, out / "mp3_bytes.mp3", "mp3").rename(out / "mp3_bytes.wav")

    x, speech["high_rate_384k.wav"] = _speech("high_rate_384k.wav", slt, 384000)
    encode.write(x, 384000, out / "high_rate_384k.wav", "wav16")

    x, _ = _speech("truncated.flac", us, 22050)
    whole = encode.write(x, 22050, out / "whole.flac", "flac").read_bytes()
    (out / "whole.flac").unlink()
    (out / "truncated.flac").write_bytes(whole[: len(whole) // 2])

    (out / "image.flac").write_bytes(_png(rng))
    junk = bytearray(rng.integers(0, 256, 32768, dtype=np.uint8).tobytes())
    junk[:4] = b"\x13\x37junk"[:4]  # never an audio signature (no 0xFF sync, no magic)
    (out / "random_bytes.flac").write_bytes(bytes(junk))

    x, _ = _speech("nan_samples.wav", us, 16000)
    x = x.astype(np.float32)
    x[len(x) // 3 : len(x) // 3 + 1600] = np.nan
    encode.write(x, 16000, out / "nan_samples.wav", "wavf32")

    with wave.open(str(out / "zero_frames.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"")

    # 10 min at 8 kHz: digital silence with a few stretches of faint (-72 dBFS) noise.
    sr, n = 8000, 8000 * 600
    x = np.zeros(n)
    for start in range(30 * sr, n, 120 * sr):
        x[start : start + 10 * sr] = rng.standard_normal(10 * sr) * 10 ** (-72 / 20)
    encode.write(x, sr, out / "long_silence.flac", "flac")
    return speech


def make_malformed(out_dir: str | Path | None = None) -> Malformed:
    """Generate (or reuse) the malformed corpus; with ``out_dir`` None it goes to the cache."""
    params = {"kind": "malformed", "version": GENERATOR_VERSION}

    def build(tmp: Path) -> None:
        audio = tmp / AUDIO_DIR
        audio.mkdir()
        speech = _build(audio)
        (tmp / "expected.json").write_text(json.dumps(EXPECTED, indent=1))
        (tmp / "speech.json").write_text(json.dumps(speech, indent=1))

    root = build_once("malformed", params, build, out_dir)
    return Malformed(
        path=root / AUDIO_DIR,
        expected=json.loads((root / "expected.json").read_text()),
        speech=json.loads((root / "speech.json").read_text()),
    )
