"""AsrStep: fill ``transcripts`` of clip items with every configured ASR system that supports
the clip's language.

Routing: a clip in language L goes to the systems whose languages include L (a backend's
declared :attr:`~accord.pipeline.asr.base.AsrBackend.languages`, or the run config's
``asr_languages`` for that system). The clip's language is the one identified per clip
upstream (``language``, the LID step) when its probability reaches ``route_min_prob``, else
the one the systems that already transcribed it agree on; a clip still without one takes the
language most of its source's clips in the batch were identified in (sources are mostly one
language, and a short clip says less than its neighbours), else it is unknown and goes to every
system (Whisper then detects it itself). The floor matters: espeak's German scored "la" (Latin)
at 0.33-0.48 in the sample bucket, and Whisper told to decode Latin looped ("esindindind...").
Agreement is then computed among the capable systems only, and ``n_asr`` counts them
(:mod:`accord.pipeline.agreement`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from accord.core.clip import float_or_nan
from accord.jobs.step import Item, ItemError, Step
from accord.pipeline.agreement import consensus_language
from accord.pipeline.asr.base import AsrBackend, create_backend, supports


@dataclass
class AsrSpec:
    """One configured system: registry name, model reference, backend options; ``system`` names
    it in the manifest (default: the backend name; two NeMo models need two names) and
    ``languages`` narrows or widens what the backend declares (None: the backend's own)."""

    backend: str
    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    system: str | None = None
    languages: tuple[str, ...] | None = None


DEFAULT_SYSTEMS = (AsrSpec("faster-whisper", "whisper:base"), AsrSpec("moonshine", "moonshine:tiny-en"))


@dataclass
class System:
    """A loaded backend with its manifest name and the languages it is routed."""

    name: str
    backend: AsrBackend
    languages: frozenset[str] | None


ROUTE_MIN_PROB = 0.5


def clip_language(item: Item, min_prob: float = ROUTE_MIN_PROB) -> str:
    """The language a clip is routed on: identified per clip with at least ``min_prob``, else
    the transcripts' consensus, else "" (unknown: every system)."""
    if item.get("language"):
        prob = item.get("language_prob")
        if prob is None or not prob < min_prob:  # an identifier without a probability is trusted
            return str(item["language"])
        return ""
    return consensus_language(list(item.get("transcripts") or []))[0]


def source_language(sources: list[Any], languages: list[str], source: Any) -> str:
    """The language most clips of ``source`` were routed on ("" when none was)."""
    counts = Counter(lang for src, lang in zip(sources, languages, strict=True) if src == source and lang)
    return counts.most_common(1)[0][0] if counts else ""


class AsrStep(Step):
    """Runs each system over the clips of the batch in its languages; a system that fails marks
    the batch's clips as errors.

    ``backends`` may be :class:`AsrSpec`/dicts (created lazily in :meth:`setup`, i.e. inside
    the actor) or ready :class:`AsrBackend` instances.
    """

    name = "asr"

    def __init__(
        self,
        backends: list[AsrSpec | dict | AsrBackend] | None = None,
        route_min_prob: float = ROUTE_MIN_PROB,
    ) -> None:
        specs = list(backends) if backends is not None else list(DEFAULT_SYSTEMS)
        if not specs:
            raise ValueError("AsrStep needs at least one ASR backend")
        self._specs = [AsrSpec(**s) if isinstance(s, dict) else s for s in specs]
        self.route_min_prob = route_min_prob
        self.systems: list[System] = []

    def setup(self) -> None:
        if self.systems:
            return
        for s in self._specs:
            if isinstance(s, AsrBackend):
                s.load()
                self.systems.append(System(s.name, s, s.languages))
                continue
            b = create_backend(s.backend, s.model, **s.options)
            b.load()  # before reading b.languages: a backend may narrow them once it knows its model
            langs = frozenset(s.languages) if s.languages is not None else b.languages
            self.systems.append(System(s.system or b.name, b, langs))

    def process(self, item: Item) -> list[Item]:
        return self.process_batch([item])

    def process_batch(self, items: list[Item]) -> list[Item]:
        self.setup()
        sources = [it.get("source_uri", i) for i, it in enumerate(items)]
        languages = [clip_language(it, self.route_min_prob) for it in items]
        languages = [
            lang or source_language(sources, languages, src)
            for src, lang in zip(sources, languages, strict=True)
        ]
        new_transcripts: list[list[dict]] = [[] for _ in items]
        for system in self.systems:
            idx = [i for i, lang in enumerate(languages) if supports(system.languages, lang)]
            if not idx:
                continue
            b = system.backend
            try:
                results = b.transcribe_batch(
                    [items[i]["audio_16k"] for i in idx],
                    groups=[sources[i] for i in idx],
                    languages=[languages[i] for i in idx],
                )
            except Exception as e:  # one system failing must not lose the batch silently
                raise ItemError(f"asr:{system.name}", type(e).__name__, str(e)[:500]) from e
            for i, r in zip(idx, results, strict=True):
                new_transcripts[i].append(
                    {
                        "system": system.name,
                        "model": b.model_ref,
                        "text": r.text,
                        "normalized": "",
                        "language": r.language or "",
                        "language_prob": float_or_nan(r.language_prob),
                        "avg_logprob": float_or_nan(r.avg_logprob),
                        "no_speech_prob": float_or_nan(r.extra.get("no_speech_prob")),
                    }
                )
        out = []
        for it, added in zip(items, new_transcripts, strict=True):
            new = dict(it)
            new["transcripts"] = list(it.get("transcripts") or []) + added
            out.append(new)
        return out
