"""Issue #28: a source's clips that all name one language surely vote it without the joined
language pass (a third of the LID step's cost on monolingual sources); clips that disagree or
doubt still get it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from accord.pipeline.lid import LanguageIdConfig
from accord.pipeline.steps.lid import SOURCE_LID_KEY, LanguageIdStep, agreed_language
from accord.samples.tts import say

from .speech import SENTENCES


def _item(lang: str, prob: float, n: int) -> dict:
    return {"language": lang, "language_prob": prob, "audio_16k": np.zeros(n, np.float32)}


def test_agreed_language_only_when_every_clip_is_sure_of_one_language() -> None:
    lang, prob = agreed_language([_item("en", 0.95, 16000), _item("en", 0.99, 48000)], 0.9)
    assert lang == "en" and prob == pytest.approx((0.95 + 3 * 0.99) / 4)
    assert agreed_language([_item("en", 0.95, 1), _item("de", 0.99, 1)], 0.9) is None
    assert agreed_language([_item("en", 0.95, 1), _item("en", 0.6, 1)], 0.9) is None
    assert agreed_language([_item("en", 0.95, 1), _item("en", math.nan, 1)], 0.9) is None
    assert agreed_language([_item("", 0.95, 1), _item("", 0.95, 1)], 0.9) is None


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    return {lang: say(voice, text, pad_s=0.1) for lang, (voice, text) in SENTENCES.items()}


def _source(*audios: np.ndarray) -> list[dict]:
    return [
        {"audio_16k": a, "source_uri": "/b/s.wav", "start_s": 5.0 * i, "duration_s": len(a) / 16000}
        for i, a in enumerate(audios)
    ]


def test_the_joined_pass_runs_only_where_the_clips_disagree(clips) -> None:
    skip = LanguageIdStep(LanguageIdConfig(threads=1))
    always = LanguageIdStep(LanguageIdConfig(threads=1, source_agree_prob=None))
    skip.setup()
    always.model = skip.model  # one Whisper for both
    en = _source(clips["en"], clips["en"][: len(clips["en"]) // 2 * 2])
    a, b = skip.process_batch(en), always.process_batch(en)
    assert [x["language"] for x in a] == [x["language"] for x in b] == ["en", "en"]
    assert min(x["language_prob"] for x in a) >= 0.9
    weights = [len(x["audio_16k"]) for x in a]
    mean = float(np.average([x["language_prob"] for x in a], weights=weights))
    assert a[0][SOURCE_LID_KEY] == ("en", pytest.approx(mean))  # voted without the pass
    assert b[0][SOURCE_LID_KEY][0] == "en" and b[0][SOURCE_LID_KEY][1] != pytest.approx(mean)
    mixed = _source(clips["en"], clips["de"])
    a, b = skip.process_batch(mixed), always.process_batch(mixed)
    assert a[0][SOURCE_LID_KEY] == b[0][SOURCE_LID_KEY]  # disagreeing clips: the joined pass decides
