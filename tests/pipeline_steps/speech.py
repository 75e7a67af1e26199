"""Sentences in three languages that Whisper base hears clearly from espeak-ng (the language ID
and routing tests; see tests/pipeline_steps/test_lid.py for the margins measured on them)."""

from __future__ import annotations

SENTENCES: dict[str, tuple[str, str]] = {  # language -> (voice, text)
    "en": ("espeak-ng:en-us", "We will meet at the station after lunch."),
    "de": ("espeak-ng:de", "Die Kinder spielten bis zum Abend im Garten."),
    "es": ("espeak-ng:es", "Nos vemos en la estación después del almuerzo."),
}
