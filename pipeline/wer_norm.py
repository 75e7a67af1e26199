"""Transcript normalisers used for agreement scoring (never for the stored text).

English uses Whisper's English normaliser (spelling, numbers, contractions), other
languages Whisper's basic one (lowercase, drop bracketed annotations and punctuation).
Languages written without spaces between words are scored on characters, so their
normalised form has no spaces at all.
"""

from __future__ import annotations

import functools
import re
import unicodedata

# ISO 639-1 codes (and Whisper's "yue") of scripts written without word spaces.
NO_SPACE_LANGUAGES: frozenset[str] = frozenset({"zh", "ja", "th", "lo", "my", "km", "bo", "yue"})

_ANNOTATION = re.compile(r"\[[^\]]*\]|\([^)]*\)|<[^>]*>|\{[^}]*\}|[♪♫]+")


@functools.lru_cache(maxsize=1)
def _english():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


@functools.lru_cache(maxsize=1)
def _basic():
    from whisper_normalizer.basic import BasicTextNormalizer

    return BasicTextNormalizer()


def base_language(language: str | None) -> str:
    """``en-US`` / ``en_us`` -> ``en``; ``""`` for unknown."""
    return re.split(r"[-_]", (language or "").strip().lower())[0]


def is_char_scored(language: str | None) -> bool:
    return base_language(language) in NO_SPACE_LANGUAGES


def strip_annotations(text: str) -> str:
    """Drop ``[music]``, ``(laughs)``, ``<noise>``, ``♪`` style annotations."""
    return _ANNOTATION.sub(" ", text)


def spoken_text(text: str) -> str:
    """The characters someone said: ``text`` without annotations, whitespace, punctuation,
    symbols or control characters (what speaking rate and characters per second count)."""
    return "".join(
        c for c in strip_annotations(text) if not c.isspace() and unicodedata.category(c)[0] not in "PSC"
    )


def normalize(text: str, language: str | None = "en") -> str:
    """The form two transcripts are compared in; see the module docstring."""
    lang = base_language(language)
    text = strip_annotations(unicodedata.normalize("NFKC", text or ""))
    out = _english()(text) if lang == "en" else _basic()(text)
    out = " ".join(out.split())
    if lang in NO_SPACE_LANGUAGES:
        out = out.replace(" ", "")
    return out
