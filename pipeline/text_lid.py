"""Text language identification of transcripts: a second opinion on the clip's spoken language.

The ingest routes each clip by Whisper's audio language ID (:mod:`accord.pipeline.lid`); a
clip that only Whisper can transcribe has no agreement score, so a wrong audio language
(Mandarin heard as Thai, Russian as Czech) used to enter training as a confident transcript in
the wrong language. Here the transcript's text gets its own language, and
:func:`text_language_agrees` compares the two.

The identifier is py3langid 0.4.0 (naive Bayes over byte n-grams, 139 languages, its model
inside the 4.6 MB wheel, BSD-3), restricted to Whisper's languages. Chosen on 672 sentences of
1-20 words written for this (32 languages, tests/data/text_lid/sentences.tsv) and 300 real
Whisper base decodes of espeak-ng speech, 250 of them with the language forced wrong
(decodes.tsv); bench/text_lid_eval.py has the numbers for eleven identifiers. Top-1 accuracy,
lowercased and unpunctuated, for 1-3 / 4-8 / 9-20 words: 0.76 / 0.96 / 0.98, and 0.83 / 0.996
/ 1.0 counting near-identical languages as right. lingua (2.1.1) was 0.79 / 0.93 / 0.97, and
langidentify 0.80 / 0.97 / 1.0, but lingua holds 1.2 GB per process and langidentify loads for
about a minute and scores a gap, not a probability. py3langid's probability, normalised with a
length temperature, is usable as such: answers at >= 0.7 were right 99-100% of the time (0.81
at 0.5-0.7, 0.56 below). About 7000 texts/s on one core, 2 s to load, ~150 MB.

The gate (:func:`text_language_agrees`) answers ``True``, ``False`` or ``None`` (cannot tell):

1. No audio language, or no letters in the text (empty, digits, punctuation): ``None``.
2. Script: fewer than half of the text's script runs (:func:`script_runs`) in the scripts of
   the audio language (a Latin ``"M"`` for a clip called Thai, Cyrillic for one called
   English): ``False``, however short.
3. No text language (fewer than two letters; "not a language"), or an audio language the
   identifier cannot name: ``None``.
4. The text's language is the audio language or a near-identical one (:data:`NEAR_IDENTICAL`):
   ``True``.
5. Another language: ``False`` at probability >= 0.5; otherwise ``None`` (written sentences of 20
   letters or more were never misread at low probability, but a real Russian transcript was:
   ``REJECT_PROB_LONG``).

Measured with these defaults: correct sentences refused 1.8% / 0.9% / 0% (1-3 / 4-8 / 9-20
words, as written or lowercased: Slovak read as Czech, Hindi as Sanskrit or Nepali, Swedish as
Norwegian, Ukrainian as Belarusian), the 1-3-word ones unjudged (None) 15-16% of the time;
right-language Whisper decodes refused 1 of 60 (a garbled Swedish one read as Norwegian). Of
the wrong-language decodes 15% were refused with long texts at any probability, 8% with the
0.5 kept for them (``REJECT_PROB_LONG``); the rest pass: 76% are text the identifier itself
places in the forced language (Thai-script gibberish for a clip forced to Thai, Czech-looking
gibberish, English stock phrases), which no text identifier can refuse; it catches Whisper
answering in the spoken language or in English, and a script that does not fit.

Near-identical pairs are merged because they are most of every identifier's errors on correct
text (Bokmål read as Danish, Croatian as Serbian, Malay as Indonesian); Czech/Slovak are not
(3 of 21 Slovak sentences read as Czech, 2 refused), so a Slovak clip decoded as Czech stays a
disagreement.
"""

from __future__ import annotations

import functools
import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

NO_LANGUAGE: tuple[str, float] = ("", math.nan)

# Gate defaults (measured in the module docstring). Another language is a disagreement at
# REJECT_PROB or more; in texts of LONG_LETTERS letters or more, at REJECT_PROB_LONG or more. The
# written sentences allowed any probability from 20 letters on, but on real speech a correct
# Russian transcript of 23 letters ("Афина, чем платят у китайцев?") read as Bulgarian at 0.43:
# long texts are held to the same 0.5.
REJECT_PROB = 0.5
LONG_LETTERS = 20
REJECT_PROB_LONG = 0.5
MIN_SCRIPT_SHARE = 0.5  # fewer of the text's script runs in the audio language's scripts: disagree

# Near-identical written languages: a transcript identified as one of them agrees with audio
# identified as another. Measured (bench/text_lid_eval.py): these pairs are most of every
# identifier's errors on correct short transcripts (Bokmål read as Danish, Croatian as Bosnian
# or Serbian, Malay as Indonesian), and Whisper's audio LID mixes them up too; a transcript
# decoded in the neighbour's spelling is a small error, not a wrong-language decode.
NEAR_IDENTICAL: tuple[frozenset[str], ...] = (
    frozenset({"de", "lb"}),  # a garbled German decode of espeak German read as Luxembourgish
    frozenset({"no", "nn", "da"}),
    frozenset({"hr", "sr", "bs"}),
    frozenset({"ms", "id"}),
)

# Scripts (first word of the Unicode character name) each Whisper language is written in; a
# language not listed is written in Latin. Serbian is written in both Cyrillic and Latin.
_SCRIPTS: dict[str, frozenset[str]] = {
    **dict.fromkeys(("zh", "yue"), frozenset({"CJK", "IDEOGRAPHIC"})),  # IDEOGRAPHIC: 々 〇
    "ja": frozenset({"CJK", "IDEOGRAPHIC", "HIRAGANA", "KATAKANA", "KATAKANA-HIRAGANA"}),  # ー
    "ko": frozenset({"HANGUL", "CJK"}),
    **dict.fromkeys(("ru", "uk", "be", "bg", "mk", "kk", "tg", "tt", "ba", "mn"), frozenset({"CYRILLIC"})),
    "sr": frozenset({"CYRILLIC", "LATIN"}),
    **dict.fromkeys(("ar", "fa", "ur", "ps", "sd"), frozenset({"ARABIC"})),
    **dict.fromkeys(("he", "yi"), frozenset({"HEBREW"})),
    "el": frozenset({"GREEK"}),
    **dict.fromkeys(("hi", "mr", "ne", "sa"), frozenset({"DEVANAGARI"})),
    **dict.fromkeys(("bn", "as"), frozenset({"BENGALI"})),
    "pa": frozenset({"GURMUKHI"}),
    "gu": frozenset({"GUJARATI"}),
    "ta": frozenset({"TAMIL"}),
    "te": frozenset({"TELUGU"}),
    "kn": frozenset({"KANNADA"}),
    "ml": frozenset({"MALAYALAM"}),
    "si": frozenset({"SINHALA"}),
    "th": frozenset({"THAI"}),
    "lo": frozenset({"LAO"}),
    "km": frozenset({"KHMER"}),
    "my": frozenset({"MYANMAR"}),
    "bo": frozenset({"TIBETAN"}),
    "hy": frozenset({"ARMENIAN"}),
    "ka": frozenset({"GEORGIAN"}),
    "am": frozenset({"ETHIOPIC"}),
}
_LATIN = frozenset({"LATIN"})


def scripts_of(language: str) -> frozenset[str]:
    """The scripts ``language`` (Whisper's code) is written in."""
    return _SCRIPTS.get(language, _LATIN)


@functools.lru_cache(maxsize=4096)
def _script(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return name.split(" ", 1)[0] if name else ""


def letters(text: str) -> list[str]:
    """The letters of ``text`` (NFKC, so full-width Latin counts as Latin); no digits, marks,
    punctuation or symbols."""
    return [c for c in unicodedata.normalize("NFKC", text or "") if unicodedata.category(c)[0] == "L"]


def script_runs(text: str) -> list[str]:
    """The script of each run of letters of one script in ``text`` (``"iPhoneを買った"``: LATIN,
    HIRAGANA, CJK, HIRAGANA): runs, not letters, so that a Latin brand name of six letters in a
    Japanese sentence weighs like the word it is."""
    runs: list[str] = []
    last = ""
    for c in unicodedata.normalize("NFKC", text or ""):
        cat = unicodedata.category(c)[0]
        if cat == "M":  # combining marks (Thai and Devanagari vowel signs) continue a run
            continue
        sc = _script(c) if cat == "L" else ""
        if sc and sc != last:
            runs.append(sc)
        last = sc
    return runs


def script_share(text: str, language: str) -> float:
    """Share of the script runs of ``text`` (:func:`script_runs`) in the scripts of
    ``language``; NaN without letters."""
    runs = script_runs(text)
    if not runs:
        return math.nan
    ok = scripts_of(language)
    return sum(r in ok for r in runs) / len(runs)


def near_identical(a: str, b: str) -> bool:
    """Same language, or two of :data:`NEAR_IDENTICAL`."""
    return a == b or any(a in g and b in g for g in NEAR_IDENTICAL)


def text_language_agrees(
    audio_language: str,
    text_language: str,
    text_prob: float,
    text: str | None = None,
    *,
    reject_prob: float = REJECT_PROB,
    long_letters: int = LONG_LETTERS,
    reject_prob_long: float = REJECT_PROB_LONG,
    min_script_share: float = MIN_SCRIPT_SHARE,
    known: frozenset[str] | None = None,
) -> bool | None:
    """Whether a transcript's text language agrees with its clip's audio language: ``True``,
    ``False``, or ``None`` when the text cannot tell (the rule and its measured error rates are
    in the module docstring). ``text``, the transcript, enables the script check and the
    stricter threshold for long texts; ``known``: the languages the identifier can name
    (:attr:`TextLanguageId.languages`; None: any), so that audio identified as a language the
    identifier cannot name is never contradicted by it."""
    audio = (audio_language or "").strip().lower()
    if not audio:
        return None
    n_letters = 0
    if text is not None:
        n_letters = len(letters(text))
        if not n_letters:
            return None
        if script_share(text, audio) < min_script_share:
            return False
    if not text_language or (known is not None and audio not in known):
        return None
    if near_identical(audio, text_language):
        return True
    threshold = reject_prob_long if n_letters >= long_letters else reject_prob
    return False if float(text_prob) >= threshold else None  # NaN: None


# Codes that Whisper spells otherwise (old ISO 639-1 codes, py3langid's); "zxx" is py3langid's
# "not a language" class.
_ALIASES: dict[str, str] = {
    "iw": "he",
    "in": "id",
    "ji": "yi",
    "mo": "ro",
    "fil": "tl",
    "jv": "jw",
    "nb": "no",
    "ary": "ar",  # Moroccan Arabic
    "arz": "ar",  # Egyptian Arabic
    "hbo": "he",  # Biblical Hebrew
    "uzs": "uz",  # Southern Uzbek (Arabic script)
    "wuu": "zh",  # Wu Chinese, written in Chinese characters
    "zxx": "",
}


def to_whisper(code: str) -> str:
    """A language code as Whisper spells it (``"iw"`` -> ``"he"``, ``"zh-Hant"`` -> ``"zh"``)."""
    base = (code or "").strip().lower().replace("_", "-").split("-")[0]  # "zh-Hant", "sr-Latn"
    return _ALIASES.get(base, base)


@functools.cache
def whisper_languages() -> frozenset[str]:
    """Whisper's language codes (faster-whisper's list)."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return frozenset(_LANGUAGE_CODES)


@dataclass(frozen=True)
class TextLanguageIdConfig:
    """How :class:`TextLanguageId` identifies a transcript's language."""

    # Answer only Whisper's languages (and "not a language"): a text identifier that may say
    # Ancient Greek or Nigerian Pidgin contradicts audio LID where it should not, and the
    # restriction lifted short-text accuracy (see the module docstring).
    whisper_only: bool = True
    # Texts with fewer letters (after dropping digits, punctuation, symbols) get NO_LANGUAGE.
    min_letters: int = 2
    max_chars: int = 1000  # longer texts are cut: the start says enough, and the cost is linear


class TextLanguageId:
    """py3langid's naive Bayes over byte n-grams, probabilities normalised with its length
    temperature; :meth:`load` once per process (an actor). Deterministic: a text's answer does
    not depend on its batch."""

    def __init__(self, config: TextLanguageIdConfig | None = None) -> None:
        self.config = config or TextLanguageIdConfig()
        self.model: Any = None
        self.languages: frozenset[str] = frozenset()  # Whisper codes this model can answer

    def load(self) -> TextLanguageId:
        if self.model is not None:
            return self
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        model = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        codes = list(dict.fromkeys(model.nb_classes))
        if self.config.whisper_only:
            whisper = whisper_languages()
            codes = [c for c in codes if c == "zxx" or to_whisper(c) in whisper]
            model.set_languages(codes)
        self.languages = frozenset(to_whisper(c) for c in codes) - {""}
        self.model = model
        return self

    def identify(self, text: str) -> tuple[str, float]:
        """``(language, probability)`` of one text; see :meth:`identify_batch`."""
        self.load()
        text = unicodedata.normalize("NFKC", text or "")[: self.config.max_chars]
        if len(letters(text)) < self.config.min_letters:
            return NO_LANGUAGE
        code, prob = self.model.classify(" ".join(text.split()))
        lang = to_whisper(code)
        return (lang, min(1.0, max(0.0, float(prob)))) if lang else NO_LANGUAGE

    def identify_batch(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """``(language, probability)`` per text, in order: the language as Whisper spells it
        (``"en"``, ``"zh"``, ``"he"``, ``"no"``) and the model's probability of it, in [0, 1].
        Empty texts, texts with fewer than ``min_letters`` letters (digits, punctuation) and
        texts the model calls "not a language" get :data:`NO_LANGUAGE` (``""``, NaN)."""
        return [self.identify(t) for t in texts]
