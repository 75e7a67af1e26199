"""A small corpus with one known defect per file, for the ingest's quality signals (issue #15).

Each file pairs with a control that lacks the defect, so a test can assert that the signal
separates them by value, not only that a column exists:

- ``one_voice.wav`` / ``two_voices.wav``: two sentences less than 0.3 s apart (one VAD clip),
  said by one voice, or by voice A then voice B: speaker consistency and the change point;
- ``bilingual.wav``: English, German, English sentences 1.2 s apart (three clips of one source):
  per-clip language ID, and ASR routed by language (the German clip goes to Whisper only);
- ``clean.wav`` / ``noisy.wav``: the same sentences, then white noise 3 dB below the speech:
  DNSMOS;
- ``repeats.wav``: a voice saying one phrase over and over: the transcript sanity checks
  (every system's transcript repeats itself, so the clip is ``hallucinated``).

``truth.json``: per file, its sentences with voice, language and [start_s, end_s), and
``join_s`` (where voice B starts) for ``two_voices.wav``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from accord.samples.tts import say

RATE = 16000
VERSION = 1
VOICE_A, VOICE_B = "flite:awb", "espeak-ng:en-us+f3"


@dataclass(frozen=True)
class Signals:
    path: Path
    truth: dict[str, Any]


def _join(parts: list[tuple[str, str, str] | float]) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Speech ``(voice, language, text)`` and silences (seconds) end to end, 0.5 s of silence
    around; the sentence spans as truth."""
    out: list[np.ndarray] = [np.zeros(RATE // 2, np.float32)]
    t, spans = 0.5, []
    for p in parts:
        if isinstance(p, float):
            out.append(np.zeros(round(p * RATE), np.float32))
            t += p
            continue
        voice, language, text = p
        x = say(voice, text)
        x = 0.5 * x / (np.abs(x).max() + 1e-9)
        spans.append(
            {"voice": voice, "language": language, "text": text, "start_s": t, "end_s": t + len(x) / RATE}
        )
        out.append(x)
        t += len(x) / RATE
    out.append(np.zeros(RATE // 2, np.float32))
    return np.concatenate(out), spans


def _build(out: Path) -> None:
    import soundfile as sf

    first = "The morning train was late again, so we walked to the old bridge."
    second = "Nobody expected the river to rise so quickly after the storm."
    truth: dict[str, Any] = {}

    def write(name: str, x: np.ndarray, spans: list[dict[str, Any]], **extra: Any) -> None:
        sf.write(out / name, x, RATE, subtype="PCM_16")
        truth[name] = {"sentences": spans, **extra}

    x, spans = _join([(VOICE_A, "en", first), 0.1, (VOICE_A, "en", second)])
    write("one_voice.wav", x, spans)
    x, spans = _join([(VOICE_A, "en", first), 0.1, (VOICE_B, "en", second)])
    write("two_voices.wav", x, spans, join_s=spans[1]["start_s"])
    x, spans = _join(
        [
            ("flite:slt", "en", "We will meet at the station after lunch."),
            1.2,
            ("espeak-ng:de", "de", "Die Kinder spielten bis zum Abend im Garten."),
            1.2,
            ("flite:slt", "en", "Please bring the blue umbrella with you tomorrow."),
        ]
    )
    write("bilingual.wav", x, spans)
    x, spans = _join([("flite:rms", "en", first), 0.1, ("flite:rms", "en", second)])
    write("clean.wav", x, spans)
    rng = np.random.default_rng(15)
    speech = np.zeros(len(x), bool)
    for s in spans:
        speech[round(s["start_s"] * RATE) : round(s["end_s"] * RATE)] = True
    from accord.samples.mixing import add_at_snr, white_noise

    noisy = add_at_snr(x, white_noise(len(x), rng), 3.0, speech)
    write("noisy.wav", (0.9 * noisy / np.abs(noisy).max()).astype(np.float32), spans, snr_db=3.0)
    phrase = ", ".join(["thank you for watching"] * 6) + "."
    x, spans = _join([("flite:slt", "en", phrase)])
    write("repeats.wav", x, spans)
    (out / "truth.json").write_text(json.dumps(truth, indent=1))


def make_signals(out_dir: str | Path | None = None) -> Signals:
    """Build (once, cached under ``$ACCORD_CACHE/samples``) and return the signals corpus."""
    from accord.samples.cache import build_once

    path = build_once("signals", {"version": VERSION, "voices": [VOICE_A, VOICE_B]}, _build, out_dir)
    return Signals(path=path, truth=json.loads((path / "truth.json").read_text()))
