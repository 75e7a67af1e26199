"""Wrappers around the apt TTS engines (espeak-ng, flite, festival) that return float audio.

Each engine runs as a subprocess into a private temp file; all three are deterministic for a
given text and voice, which is what makes the sample bucket reproducible.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

ENGINES = ("espeak-ng", "flite", "festival")


@dataclass(frozen=True)
class Voice:
    """One engine voice: ``name`` is the engine's own voice id."""

    engine: str
    name: str
    language: str  # ISO 639-1

    @property
    def label(self) -> str:
        return f"{self.engine}:{self.name}"


# Voices checked to work with the Debian packages (espeak-ng 1.51, flite 2.2, festival 2.5).
VOICES: dict[str, Voice] = {
    v.label: v
    for v in (
        Voice("espeak-ng", "en-us", "en"),
        Voice("espeak-ng", "en-us+f3", "en"),
        Voice("espeak-ng", "en+m3", "en"),
        Voice("espeak-ng", "de", "de"),
        Voice("espeak-ng", "es", "es"),
        Voice("flite", "slt", "en"),
        Voice("flite", "awb", "en"),
        Voice("flite", "rms", "en"),
        Voice("flite", "kal16", "en"),
        Voice("flite", "kal", "en"),  # 8 kHz
        Voice("festival", "kal_diphone", "en"),
        Voice("festival", "ked_diphone", "en"),
        Voice("festival", "cmu_us_slt_arctic_hts", "en"),
    )
}


class TTSError(RuntimeError):
    """An engine is missing or failed on a text."""


def _require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise TTSError(
            f"{binary} not found: install it with `apt-get install {binary}` (see scripts/setup.sh)"
        )
    return path


def _command(voice: Voice, text_file: Path, out: Path) -> list[str]:
    if voice.engine == "espeak-ng":
        return [_require("espeak-ng"), "-v", voice.name, "-f", str(text_file), "-w", str(out)]
    if voice.engine == "flite":
        return [_require("flite"), "-voice", voice.name, "-f", str(text_file), "-o", str(out)]
    if voice.engine == "festival":
        return [_require("text2wave"), "-eval", f"(voice_{voice.name})", str(text_file), "-o", str(out)]
    raise TTSError(f"unknown TTS engine {voice.engine!r}; known: {ENGINES}")


def synthesize(voice: Voice, text: str) -> tuple[np.ndarray, int]:
    """Speak ``text`` with ``voice``; returns (mono float32 samples, sample rate)."""
    with tempfile.TemporaryDirectory(prefix="accord-tts-") as tmp:
        text_file, out = Path(tmp) / "text.txt", Path(tmp) / "out.wav"
        text_file.write_text(text + "\n", encoding="utf-8")
        proc = subprocess.run(_command(voice, text_file, out), capture_output=True, timeout=120)
        if proc.returncode != 0 or not out.exists() or out.stat().st_size <= 44:
            err = proc.stderr.decode(errors="replace").strip()[-300:]
            raise TTSError(f"{voice.label} failed (exit {proc.returncode}) on {text[:40]!r}: {err}")
        x, sr = sf.read(out, dtype="float32", always_2d=True)
    return x.mean(axis=1), int(sr)


def trim_silence(x_T: np.ndarray, sr: int, rel_db: float = -40.0, frame_s: float = 0.01) -> tuple[int, int]:
    """[start, end) sample range where frame RMS is within ``rel_db`` of the loudest frame.

    TTS engines pad their output with silence; the truth must mark where speech really is.
    """
    hop = max(1, int(sr * frame_s))
    n = len(x_T) // hop
    if n == 0:
        return 0, 0
    rms = np.sqrt(np.mean(x_T[: n * hop].astype(np.float64).reshape(n, hop) ** 2, axis=1))
    thr = max(rms.max() * 10 ** (rel_db / 20), 1e-4)
    active = np.flatnonzero(rms > thr)
    if active.size == 0:
        return 0, 0
    return int(active[0] * hop), int(min(len(x_T), (active[-1] + 1) * hop))


def say(voice: str, text: str, sr: int = 16000, pad_s: float = 0.0) -> np.ndarray:
    """``text`` spoken by the voice labelled ``voice`` (``VOICES``), trimmed to its speech with
    ``pad_s`` of the engine's own edge kept, at ``sr`` (float32 mono): a test clip in one call."""
    from accord.samples.mixing import resample

    x, rate = synthesize(VOICES[voice], text)
    a, b = trim_silence(x, rate)
    pad = round(pad_s * rate)
    return resample(x[max(0, a - pad) : b + pad], rate, sr).astype(np.float32)
