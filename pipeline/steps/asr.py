"""AsrStep: fill ``transcripts`` of clip items with every configured ASR system that can
transcribe the clip's language; a system that fails on a clip is recorded, never loses it.

Routing is on the language *distribution* of the clip (``language_scores``, from the LID step),
not on its top language alone: the clip's *plausible* languages are its top language and every
other one at ``plausible_min_prob`` (0.2) or more, and a system takes the clip only when it supports
all of them (a backend's declared :attr:`~accord.pipeline.asr.base.AsrBackend.languages`, or the
run config's ``asr_languages``). So an English-only system never scores a clip that is plausibly
not English, even when English came out on top: before this, a French clip identified at 0.36
went to English-only Moonshine too, got ``n_asr`` 2 and agreement 0.1, and was dropped from
every stage. The floor is 0.2, not lower: on real English recordings Whisper base gives Welsh,
Maori or Malay 0.10-0.17 beside English (at 0.1, one English clip in six lost its second
system), and a clip sent to both systems in error is still judged by their agreement. Agreement
is then computed among the systems that took the clip, and ``n_asr`` counts those that produced
text (:mod:`accord.pipeline.agreement`).

Systems are told the clip's top language. A clip with no identified language (too short to
score, or no LID step) takes the language most clips of its source in the batch were identified
in, else the one earlier systems' transcripts agree on, else it is unknown and goes to every
system (Whisper then detects it itself).

Failures: a system that raises on a batch is retried clip by clip, and a clip it still fails on
gets an ``asr_failures`` entry (system, error type, reason) while the other systems' text
stands. A clip that every system failed on becomes an error row in the agreement step, and the
ingest leaves its source without a completion marker, so the next run retries it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from accord.core.clip import float_or_nan
from accord.jobs.step import Item, Step
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


DEFAULT_SYSTEMS = (AsrSpec("faster-whisper"), AsrSpec("moonshine"))  # each on its backend's default_model


@dataclass
class System:
    """A loaded backend with its manifest name and the languages it is routed."""

    name: str
    backend: AsrBackend
    languages: frozenset[str] | None


PLAUSIBLE_MIN_PROB = 0.2


@dataclass(frozen=True)
class Route:
    """Where a clip goes: the language systems are told ("" unknown: they detect it) and the
    languages it may be in (empty: nothing known, every system may take it)."""

    language: str
    plausible: frozenset[str]


def clip_route(item: Item, plausible_min_prob: float = PLAUSIBLE_MIN_PROB) -> Route:
    """A clip's route from its identified language and scores (the LID step), else from the
    transcripts earlier systems produced (their consensus), else unknown."""
    language = str(item.get("language") or "")
    if not language:
        language = consensus_language(list(item.get("transcripts") or []))[0]
    plausible = {
        str(s["language"])
        for s in item.get("language_scores") or []
        if s.get("language") and float_or_nan(s.get("prob")) >= plausible_min_prob
    }
    return Route(language, frozenset(plausible | ({language} if language else set())))


def source_language(sources: list[Any], languages: list[str], source: Any) -> str:
    """The language most clips of ``source`` were routed on ("" when none was)."""
    counts = Counter(lang for src, lang in zip(sources, languages, strict=True) if src == source and lang)
    return counts.most_common(1)[0][0] if counts else ""


def capable(languages: frozenset[str] | None, route: Route) -> bool:
    """Whether a system restricted to ``languages`` (None: any) may transcribe a clip on ``route``:
    it supports every plausible language; with none known, every system may."""
    return languages is None or all(supports(languages, lang) for lang in route.plausible)


def failure(system: str, exc: BaseException) -> dict[str, str]:
    """An ``asr_failures`` entry: which system failed on the clip and why."""
    return {"system": system, "error_type": type(exc).__name__, "reason": str(exc)[:500]}


class AsrStep(Step):
    """Runs each system over the clips of the batch it is capable of (see the module doc).

    ``backends`` may be :class:`AsrSpec`/dicts (created lazily in :meth:`setup`, i.e. inside
    the actor) or ready :class:`AsrBackend` instances.
    """

    name = "asr"
    reads = ("audio_16k",)
    # routing: the LID step's language and scores, else earlier systems' transcripts, else the
    # clip's source; each system appends to ``transcripts`` / ``asr_failures``
    may_read = ("language", "language_scores", "source_uri", "transcripts", "asr_failures")
    writes = ("transcripts", "asr_failures")

    def __init__(
        self,
        backends: list[AsrSpec | dict | AsrBackend] | None = None,
        plausible_min_prob: float = PLAUSIBLE_MIN_PROB,
    ) -> None:
        specs = list(backends) if backends is not None else list(DEFAULT_SYSTEMS)
        if not specs:
            raise ValueError("AsrStep needs at least one ASR backend")
        self._specs = [AsrSpec(**s) if isinstance(s, dict) else s for s in specs]
        self.plausible_min_prob = plausible_min_prob
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

    def routes(self, items: list[Item]) -> list[Route]:
        """Each clip's route; a clip without a language takes its source's (see the module doc)."""
        sources = [it.get("source_uri", i) for i, it in enumerate(items)]
        routes = [clip_route(it, self.plausible_min_prob) for it in items]
        languages = [r.language for r in routes]
        out = []
        for src, r in zip(sources, routes, strict=True):
            if not r.language and (lang := source_language(sources, languages, src)):
                r = Route(lang, frozenset({lang}))
            out.append(r)
        return out

    def transcribe(
        self, system: System, audios: list[Any], groups: list[Any], languages: list[str]
    ) -> list[Any]:
        """One result per clip: its transcript, or the exception it failed with. The batch is
        tried whole first, then (if it raises) clip by clip, so one bad clip fails alone."""
        b = system.backend
        try:
            results = b.transcribe_batch(audios, groups=groups, languages=languages)
            if len(results) == len(audios):
                return list(results)
        except Exception:
            if len(audios) == 1:
                raise
        out: list[Any] = []
        for a, g, lang in zip(audios, groups, languages, strict=True):
            try:
                out.append(b.transcribe_batch([a], groups=[g], languages=[lang])[0])
            except Exception as e:  # this clip alone
                out.append(e)
        return out

    def process_batch(self, items: list[Item]) -> list[Item]:
        self.setup()
        sources = [it.get("source_uri", i) for i, it in enumerate(items)]
        routes = self.routes(items)
        added: list[list[dict]] = [[] for _ in items]
        failed: list[list[dict]] = [[] for _ in items]
        for system in self.systems:
            idx = [i for i, r in enumerate(routes) if capable(system.languages, r)]
            if not idx:
                continue
            try:
                results = self.transcribe(
                    system,
                    [items[i]["audio_16k"] for i in idx],
                    [sources[i] for i in idx],
                    [routes[i].language for i in idx],
                )
            except Exception as e:  # a lone clip's failure
                results = [e]
            for i, r in zip(idx, results, strict=True):
                if isinstance(r, BaseException):
                    failed[i].append(failure(system.name, r))
                    continue
                added[i].append(
                    {
                        "system": system.name,
                        "model": system.backend.model_ref,
                        "text": r.text,
                        "normalized": "",
                        "language": r.language or "",
                        "language_prob": float_or_nan(r.language_prob),
                        "avg_logprob": float_or_nan(r.avg_logprob),
                        "no_speech_prob": float_or_nan(r.extra.get("no_speech_prob")),
                    }
                )
        out = []
        for it, new_t, new_f in zip(items, added, failed, strict=True):
            item = dict(it)
            item["transcripts"] = list(it.get("transcripts") or []) + new_t
            item["asr_failures"] = list(it.get("asr_failures") or []) + new_f
            out.append(item)
        return out
