"""TextLanguageStep: each transcript's text language, and what it says of the clip's language.

Adds to each transcript ``text_language`` / ``text_language_prob`` (:mod:`accord.pipeline.text_lid`)
and to the clip ``language_check`` (:data:`accord.core.clip.LANGUAGE_CHECKS`): ``differs`` when
any transcript's text contradicts the clip's (audio) language, else ``agrees`` when one
confirms it, else ``unverified`` (too little text to tell). The stage gates read it
(:mod:`accord.core.eligibility`). A cheap CPU step (a naive Bayes over byte n-grams, ~7000
texts/s), so it runs among the post steps, after agreement has settled the clip's language.
"""

from __future__ import annotations

from collections.abc import Sequence

from accord.core.clip import LANGUAGE_AGREES, LANGUAGE_DIFFERS, LANGUAGE_UNVERIFIED, float_or_nan
from accord.jobs.step import Item, Step
from accord.pipeline.text_lid import TextLanguageId, TextLanguageIdConfig, text_language_agrees


def language_check(language: str, transcripts: Sequence[dict], known: frozenset[str] | None) -> str:
    """The clip's verdict from its transcripts' text languages (see the module doc)."""
    verdicts = [
        text_language_agrees(
            language,
            str(t.get("text_language") or ""),
            float_or_nan(t.get("text_language_prob")),
            text=str(t.get("text") or ""),
            known=known,
        )
        for t in transcripts
    ]
    if any(v is False for v in verdicts):
        return LANGUAGE_DIFFERS
    return LANGUAGE_AGREES if any(v is True for v in verdicts) else LANGUAGE_UNVERIFIED


class TextLanguageStep(Step):
    name = "text_language"
    reads = ("transcripts.text",)
    may_read = ("language",)  # the clip's settled language (LID, then agreement)
    writes = ("transcripts.text_language", "transcripts.text_language_prob", "language_check")

    def __init__(self, config: TextLanguageIdConfig | None = None) -> None:
        self.model = TextLanguageId(config)

    def setup(self) -> None:
        self.model.load()

    def process(self, item: Item) -> list[Item]:
        return self.process_batch([item])  # type: ignore[return-value]

    def process_batch(self, items: list[Item]) -> list[Item]:
        self.setup()
        out = []
        for item in items:
            transcripts = [dict(t) for t in item.get("transcripts") or []]
            for t, (lang, prob) in zip(
                transcripts,
                self.model.identify_batch([t.get("text") or "" for t in transcripts]),
                strict=True,
            ):
                t.update(text_language=lang, text_language_prob=prob)
            language = str(item.get("language") or "")
            out.append(
                {
                    **item,
                    "transcripts": transcripts,
                    "language_check": language_check(language, transcripts, self.model.languages),
                }
            )
        return out
