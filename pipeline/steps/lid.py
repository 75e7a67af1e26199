"""LanguageIdStep: the spoken language of each clip on its own (:mod:`accord.pipeline.lid`).

Adds to an item:

- ``language`` (str): ISO 639-1 code as Whisper's language token spells it (``"en"``, ``"de"``);
- ``language_prob`` (float): Whisper's probability of that language, in [0, 1];
- ``language_scores`` (list of ``{"language", "prob"}``): the ``top_k`` most probable languages,
  most probable first. The ASR step routes on them: a clip that is plausibly not English never
  goes to an English-only system, however the top language came out.

A clip with no audio (missing, ``None``, empty), shorter than ``min_s`` (0.1 s) or with NaN/inf
samples gets ``""``, NaN and no scores: NaN fails any active language-probability gate and passes
one left off. An ``audio_16k`` that is not 1-D is an :class:`ItemError` of that item alone.
"""

from __future__ import annotations

import math

import numpy as np

from accord.jobs.step import Item
from accord.pipeline.lid import LanguageIdConfig, WhisperLanguageId
from accord.pipeline.steps.batched import AUDIO_KEY, AudioBatchStep

OUTPUT_KEYS = ("language", "language_prob", "language_scores")
TOP_K = 5  # languages kept per clip: enough for routing (and for a person to see the doubt)
SOURCE_LID_KEY = "source_lid"  # (language, prob) of the source's clips joined: not a column
SOURCE_LID_MAX_S = 30.0  # Whisper's window


class LanguageIdStep(AudioBatchStep):
    """One batched ``detect_language`` pass per batch of clips (per equal encoder length)."""

    name = "lid"
    reads = (AUDIO_KEY,)
    may_read = ("source_uri", "start_s")  # the source's clips joined, in time order
    writes = OUTPUT_KEYS
    carries = (SOURCE_LID_KEY,)  # only on clips with another clip of their source in the batch

    def __init__(self, config: LanguageIdConfig | None = None) -> None:
        self.config = config or LanguageIdConfig()
        self.model: WhisperLanguageId | None = None

    def setup(self) -> None:
        if self.model is None:
            self.model = WhisperLanguageId(self.config).load()

    def audio(self, item: Item) -> np.ndarray:
        if item.get(AUDIO_KEY) is None:  # no audio: no language (detect_scores says [])
            return np.zeros(0, np.float32)
        return super().audio(item)

    def score(self, audios: list[np.ndarray]) -> list[list[tuple[str, float]]]:
        assert self.model is not None
        return self.model.detect_scores(audios, TOP_K)

    def process_batch(self, items: list[Item]) -> list[Item | Exception]:
        """Per clip as :class:`AudioBatchStep` does; then, per source, the language of its clips
        in this batch joined (up to 30 s): one identification that hears several clips at once,
        which :mod:`accord.pipeline.source_language` weighs over the whole source. Clips that all
        agree surely (``source_agree_prob``) vote their language without that pass."""
        out = super().process_batch(items)
        by_source: dict[str, list[int]] = {}
        for i, it in enumerate(out):
            if not isinstance(it, Exception) and it.get("language"):
                by_source.setdefault(str(it.get("source_uri") or ""), []).append(i)
        groups = [idx for idx in by_source.values() if len(idx) > 1]
        agree = self.config.source_agree_prob
        agreed = {
            k: None if agree is None else agreed_language([out[i] for i in idx], agree)  # type: ignore[misc]
            for k, idx in enumerate(groups)
        }
        todo = [k for k, v in agreed.items() if v is None]
        joined = [self._joined([out[i] for i in groups[k]]) for k in todo]  # type: ignore[misc]
        assert self.model is not None
        for k, scores in zip(todo, self.model.detect_scores(joined, 1) if joined else [], strict=True):
            agreed[k] = scores[0] if scores else ("", math.nan)
        for k, idx in enumerate(groups):
            for i in idx:
                out[i] = {**out[i], SOURCE_LID_KEY: agreed[k]}  # type: ignore[dict-item]
        return out

    def _joined(self, items: list[Item]) -> np.ndarray:
        parts, n = [], 0
        for it in sorted(items, key=lambda it: float(it.get("start_s") or 0.0)):
            x = np.asarray(it[AUDIO_KEY], np.float32)
            parts.append(x[: max(0, int(SOURCE_LID_MAX_S * 16000) - n)])
            n += len(parts[-1])
        return np.concatenate(parts)

    def annotate(self, item: Item, result: list[tuple[str, float]]) -> Item:
        language, prob = result[0] if result else ("", math.nan)
        scores = [{"language": lang, "prob": p} for lang, p in result]
        return {**item, "language": language, "language_prob": prob, "language_scores": scores}


def agreed_language(items: list[Item], min_prob: float) -> tuple[str, float] | None:
    """``(language, duration-weighted mean probability)`` when every clip names one language at
    ``min_prob`` or more, else ``None``. Such clips need no joined pass: it would name the same
    language (issue #28: the pass was a third of the step's cost on monolingual sources); it
    exists for clips that disagree or doubt (a noisy clip heard as Dutch beside English ones, a
    proverb's halves heard as Hungarian 0.54 and German 0.58)."""
    langs = {str(it.get("language") or "") for it in items}
    probs = [float(it.get("language_prob", math.nan)) for it in items]
    if len(langs) != 1 or "" in langs or not all(p >= min_prob for p in probs):
        return None
    weights = [len(it[AUDIO_KEY]) for it in items]
    return langs.pop(), float(np.average(probs, weights=weights))
