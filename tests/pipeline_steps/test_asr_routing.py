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
    lid = LanguageIdStep(LanguageIdConfig(threads=2))
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


def _scores(**probs: float) -> list[dict]:
    return [{"language": k, "prob": v} for k, v in sorted(probs.items(), key=lambda kv: -kv[1])]


def test_a_clip_plausibly_not_english_never_reaches_an_english_only_system() -> None:
    """Routing reads the language distribution, not only its top: English on top at 0.55 with
    French at 0.3 is plausibly French, so English-only systems leave it to the others."""
    step = AsrStep([AsrSpec("faster-whisper", "whisper:base")])
    step.systems = [System("any", _Echo("a"), None), System("en-only", _Echo("e"), frozenset({"en"}))]
    audio = np.zeros(RATE, np.float32)
    items = [
        {"audio_16k": audio, "language": "en", "language_scores": _scores(en=0.97, de=0.01)},
        {"audio_16k": audio, "language": "en", "language_scores": _scores(en=0.55, fr=0.3)},
        {"audio_16k": audio, "language": "fr", "language_scores": _scores(fr=0.36, en=0.3)},
    ]
    out = step.process_batch(items)
    assert [[t["system"] for t in it["transcripts"]] for it in out] == [["any", "en-only"], ["any"], ["any"]]
    assert [it["transcripts"][0]["text"] for it in out] == ["heard en", "heard en", "heard fr"]


class _FailsOn(AsrBackend):
    """A system that raises on clips longer than ``limit`` samples (as Moonshine's ONNX decoder
    once did on clips of 9.4 s and more) and transcribes the rest."""

    name = "fails-on-long"

    def __init__(self, limit: int) -> None:
        super().__init__("x")
        self.limit = limit

    def load(self) -> None:
        pass

    def transcribe_batch(self, audios, groups=None, languages=None) -> list[Transcript]:
        if any(len(a) > self.limit for a in audios):
            raise RuntimeError("broadcast 2 by 589")
        return [Transcript(text="short clip") for _ in audios]


def test_a_system_failing_on_a_clip_is_recorded_and_the_clip_stays() -> None:
    step = AsrStep([AsrSpec("faster-whisper", "whisper:base")])
    step.systems = [System("any", _Echo("a"), None), System("flaky", _FailsOn(RATE), None)]
    items = [{"audio_16k": np.zeros(n, np.float32), "language": "en"} for n in (RATE // 2, 10 * RATE)]
    short, long = step.process_batch(items)  # the batch fails for "flaky": retried clip by clip
    assert [t["system"] for t in short["transcripts"]] == ["any", "flaky"] and short["asr_failures"] == []
    assert [t["system"] for t in long["transcripts"]] == ["any"]
    assert long["asr_failures"] == [
        {"system": "flaky", "error_type": "RuntimeError", "reason": "broadcast 2 by 589"}
    ]
    scored = AgreementStep().process(long)[0]
    assert scored["n_asr"] == 1 and math.isnan(scored["agreement"])  # the systems that produced text


def test_a_clip_every_system_failed_on_is_an_error_to_retry() -> None:
    from accord.core.errors import error_from_exception, retriable
    from accord.jobs.step import ItemError

    step = AsrStep([AsrSpec("faster-whisper", "whisper:base")])
    step.systems = [System("flaky", _FailsOn(RATE), None)]
    (item,) = step.process_batch([{"audio_16k": np.zeros(10 * RATE, np.float32), "language": "en"}])
    assert item["transcripts"] == [] and len(item["asr_failures"]) == 1
    with pytest.raises(ItemError) as e:
        AgreementStep().process(item)
    assert e.value.error_type == "all_systems_failed" and "flaky: RuntimeError" in e.value.reason
    assert retriable(error_from_exception("s3://b/a.wav", "agreement", e.value))
