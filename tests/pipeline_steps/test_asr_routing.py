"""Agreement right for every language: a clip goes to the ASR systems that support its language.

Real models: per-clip language ID (Whisper base), Whisper base (any language) and Moonshine
tiny-en (English only). Before routing, every German and Spanish clip went to Moonshine too,
came back as English nonsense and scored agreement ~0: dropped from every stage.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from accord.core.eligibility import eligible
from accord.pipeline.asr.base import AsrBackend, Transcript, supports
from accord.pipeline.lid import LanguageIdConfig
from accord.pipeline.steps import AgreementStep, AsrSpec, AsrStep, LanguageIdStep
from accord.pipeline.steps.asr import System
from accord.samples.tts import say

from ..transcripts import assert_reads
from .speech import SENTENCES

RATE = 16000


@pytest.fixture(scope="module")
def routed(whisper_base, moonshine_tiny) -> dict[str, dict]:
    items = [
        {"clip_id": lang, "source_uri": "/bucket/mixed.wav", "audio_16k": say(*SENTENCES[lang], pad_s=0.1)}
        for lang in SENTENCES
    ]
    lid = LanguageIdStep(LanguageIdConfig(cpu_threads=2))
    asr = AsrStep([whisper_base, moonshine_tiny])
    items = asr.process_batch(lid.process_batch(items))
    return {it["clip_id"]: AgreementStep().process(it)[0] for it in items}


def test_supports() -> None:
    assert supports(None, "de") and supports(frozenset({"en"}), "en") and supports(frozenset({"en"}), "")
    assert not supports(frozenset({"en"}), "de")


@pytest.mark.integration
def test_each_clip_gets_the_systems_of_its_language(routed) -> None:
    en, de, es = routed["en"], routed["de"], routed["es"]
    assert [t["system"] for t in en["transcripts"]] == ["faster-whisper", "moonshine"]
    assert en["n_asr"] == 2 and en["agreement"] > 0.8 and en["language"] == "en"
    for clip, lang in ((de, "de"), (es, "es")):
        # Moonshine tiny-en is English only: it never sees these clips
        assert [t["system"] for t in clip["transcripts"]] == ["faster-whisper"]
        assert clip["language"] == lang and clip["language_prob"] > 0.9 and clip["n_asr"] == 1
        assert math.isnan(clip["agreement"])  # single-system, not disagreeing
        # Whisper decoded in the identified language, not in a guess from a packed window
        assert clip["transcripts"][0]["text"].strip()
        assert_reads(clip["transcripts"][0]["text"], SENTENCES[lang][1], lang)  # not one exact word
    # the stage policy: pretrain and midtrain take single-system clips, the anneal stages need two
    row = {**de, "duration_s": 3.0, "speaking_rate": 15.0, "snr_db": 40.0, "bandwidth_hz": 8000.0}
    got = eligible(row)
    assert got["pretrain"] and got["midtrain"] and not got["anneal1"] and not got["anneal2"]


class _Echo(AsrBackend):
    """A stand-in system for routing alone (no model): says which language it was told."""

    name = "echo"

    def load(self) -> None:
        pass

    def transcribe_batch(self, audios, groups=None, languages=None) -> list[Transcript]:
        return [Transcript(text=f"heard {lang}") for lang in languages or [""] * len(audios)]


def test_configured_languages_route_clips_without_models() -> None:
    """A system narrowed to German (a run config's asr_languages) gets German clips only; a clip
    of no identified language reaches every system."""
    step = AsrStep([AsrSpec("faster-whisper", "whisper:base")])  # replaced below: nothing loads
    step.systems = [System("any", _Echo("a"), None), System("nemo-de", _Echo("d"), frozenset({"de"}))]
    items = [{"audio_16k": np.zeros(RATE, np.float32), "language": lang} for lang in ("de", "en", "")]
    out = step.process_batch(items)
    systems = [[t["system"] for t in it["transcripts"]] for it in out]
    assert systems == [["any", "nemo-de"], ["any"], ["any", "nemo-de"]]
    assert out[0]["transcripts"][1]["text"] == "heard de"  # told the language, not guessing it
