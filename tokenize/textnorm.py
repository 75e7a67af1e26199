"""Written -> spoken text ("$5.32" -> "five dollars thirty two cents"), as the ZONOS2 release does it.

The release normalizes every request's text before tokenizing it (``python/zonos2/tokenizer/
textnorm.py``, on unless ``ZONOS2_TTS_NORM=0`` or the request says ``text_normalization=False``),
so a model trained on written transcripts (digits, symbols) would be served text of another form.
accord applies the same normalizer at tokenize time (each transcript, with its clip's language:
``text_normalized`` beside the written ``text`` in the sample) and in synth.

The normalizer is the release's: NeMo forward text normalization, the r1.2.0 grammars
(``nemo-text-processing==1.2.0``, byte-identical to the release's vendored copy but for import
paths), deterministic, ``cased`` input (``lower_cased`` for ko), with the release's pre- and
post-processing around it (:func:`normalize`). Languages without grammars pass through unchanged.

Compiling a language's grammars takes from seconds to minutes; the compiled FSTs are cached as
``.far`` files under ``$ACCORD_CACHE/textnorm/<version>/`` and load in about a second
(``scripts/setup.sh`` builds en, de, es and fr once: :func:`main`).
"""

from __future__ import annotations

import argparse
import logging
import re
import threading
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from accord.core.weights import cache_dir

log = logging.getLogger(__name__)

NEMO_TN_VERSION = "1.2.0"  # nemo-text-processing: the r1.2.0 grammars the release vendors
PYNINI_VERSION = "2.1.6.post1"  # what nemo-text-processing 1.2.0 requires (the release: 2.1.6)
RELEASE_TEXTNORM = "Zyphra/ZONOS2@8fee419:python/zonos2/tokenizer/textnorm.py"
NORMALIZER_VERSION = f"nemo-text-processing=={NEMO_TN_VERSION}+zonos2-textnorm@8fee419"
"""Which normalizer produced a shard's ``text_normalized`` (``tokenize.json``); change it with
any change to the grammars' version or to the pre/post-processing below."""

# Language code -> NeMo grammar package. accord's clip languages are ISO 639-1; the release's
# server codes (textnorm.py:25-36: en_us, en_gb, fr_fr, pt_br, cmn) name the same grammars.
NEMO_LANGUAGES: dict[str, str] = {
    **{code: code for code in ("en", "de", "es", "fr", "it", "pt", "ja", "zh", "ko")},
    **{"en_us": "en", "en_gb": "en", "fr_fr": "fr", "pt_br": "pt", "cmn": "zh"},
}
LOWER_CASED = {"ko"}  # textnorm.py:40: upstream's own tests run ko lower_cased, the rest cased
# textnorm.py:45: zh/ja verbalizers read a cached .far but never write one (ja reads "jp_")
_VERBALIZER_FAR_PREFIX = {"zh": "zh", "ja": "jp"}
# textnorm.py:52-53: a digit right before sentence punctuation breaks several r1.2.0 grammars (pt
# raises, de reads dates digit by digit): spaced apart first, re-attached after.
_DIGIT_PUNCT_RE = re.compile(r"(\d)([.!?,;:])(?=\s|$)")
_SPACE_PUNCT_RE = re.compile(r" +([.!?,;:])(?=\s|$)")
# textnorm.py:59: Moses punctuation post-processing only where it does not glue currency symbols
# to the next word ("5,32 € am" -> "€am" in the European languages)
MOSES_LANGUAGES = {"en", "zh", "ja", "ko"}

# per-text outcomes (a sample's ``normalization_outcome``)
NORMALIZED, PASSTHROUGH, FAILED, OFF = "normalized", "passthrough", "failed", "off"
READY = ".accord-ready"  # in a grammar folder: every .far of the language is written


class TextNormUnavailableError(RuntimeError):
    """nemo-text-processing missing or of another version: a setup error, never a text's."""


_normalizers: dict[str, Any] = {}
_locks: dict[str, threading.Lock] = {}
_global_lock = threading.Lock()


def nemo_language(language: str | None) -> str | None:
    """The grammar package for a language code, None when it has none (text passes through)."""
    return NEMO_LANGUAGES.get((language or "").strip().lower())


def cache_root() -> Path:
    """Where compiled grammars live: one folder per normalizer version."""
    return cache_dir() / "textnorm" / NORMALIZER_VERSION.replace("==", "-").replace("@", "-")


def grammar_dir(language: str) -> Path:
    """A language's compiled grammars: one folder per (lang, case), as upstream .far names collide."""
    lang = nemo_language(language) or language
    return cache_root() / f"{lang}_{'lower_cased' if lang in LOWER_CASED else 'cased'}"


def _lock(lang: str) -> threading.Lock:
    with _global_lock:
        return _locks.setdefault(lang, threading.Lock())


def _check_versions() -> None:
    """Refuse other grammar versions: shards record NORMALIZER_VERSION as what made their text."""
    try:
        got = metadata.version("nemo-text-processing")
    except metadata.PackageNotFoundError:
        raise TextNormUnavailableError(
            "text normalization needs nemo-text-processing (accord[textnorm]): run scripts/setup.sh, "
            "or turn it off (tokenize: text_normalization=false; synth: --no-normalize)"
        ) from None
    if got != NEMO_TN_VERSION:
        raise TextNormUnavailableError(
            f"nemo-text-processing {got} installed; accord normalizes text with {NEMO_TN_VERSION}"
        )


def _build(lang: str) -> Any:
    """A NeMo ``Normalizer`` as textnorm.py:99-129 builds it: cached .far files per (lang, case)."""
    _check_versions()
    from nemo_text_processing.text_normalization.normalize import Normalizer

    case = "lower_cased" if lang in LOWER_CASED else "cased"
    folder = grammar_dir(lang)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    normalizer = Normalizer(input_case=case, lang=lang, cache_dir=str(folder), overwrite_cache=False)
    prefix = _VERBALIZER_FAR_PREFIX.get(lang)
    if prefix is not None:
        far = folder / f"{prefix}_tn_True_deterministic_verbalizer.far"
        if not far.exists():
            from nemo_text_processing.text_normalization.en.graph_utils import generator_main

            generator_main(str(far), {"verbalize": normalizer.verbalizer.fst})
    (folder / READY).touch()
    log.info("text normalizer %s (%s) ready in %.1f s (%s)", lang, case, time.perf_counter() - t0, folder)
    return normalizer


def get_normalizer(language: str) -> Any:
    """The language's normalizer, built (or loaded from the cache) once per process."""
    lang = nemo_language(language)
    if lang is None:
        raise ValueError(f"no text-normalization grammars for language {language!r}")
    with _lock(lang):
        if lang not in _normalizers:
            _normalizers[lang] = _build(lang)
        return _normalizers[lang]


def normalize_status(text: str, language: str | None) -> tuple[str, str]:
    """``(spoken text, outcome)``: textnorm.py:147-172. Unchanged for a language without grammars
    (``passthrough``) or empty text, and, as the release does, on a normalizer error or an empty
    result (``failed``: never fails the caller)."""
    lang = nemo_language(language)
    if lang is None:
        return text, PASSTHROUGH
    if not text.strip():
        return text, NORMALIZED
    spaced = _DIGIT_PUNCT_RE.sub(r"\1 \2", text)
    try:
        normalizer = get_normalizer(lang)
        with _lock(lang):  # the Normalizer's TokenParser is shared state
            result = normalizer.normalize(spaced, punct_post_process=lang in MOSES_LANGUAGES)
    except TextNormUnavailableError:
        raise
    except Exception:
        log.exception("text normalization failed (%s); keeping the written text: %r", language, text)
        return text, FAILED
    if isinstance(result, str):
        result = _SPACE_PUNCT_RE.sub(r"\1", result)
    if not isinstance(result, str) or not result.strip():
        return text, FAILED
    return result, NORMALIZED


def normalize(text: str, language: str | None) -> str:
    """``text`` in its spoken form for ``language``, as the release's tokenizer server gives it."""
    return normalize_status(text, language)[0]


def normalization_info(enabled: bool, languages: Iterable[str | None]) -> dict[str, Any]:
    """``tokenize.json``'s ``text_normalization``: the normalizer and version, and which of a
    run's clip languages were normalized and which passed through unchanged."""
    langs = {(lang or "") for lang in languages}
    return {
        "enabled": bool(enabled),
        "normalizer": "nemo-text-processing" if enabled else None,
        "version": NORMALIZER_VERSION if enabled else None,
        "release": RELEASE_TEXTNORM,
        "normalized_languages": sorted(x for x in langs if enabled and nemo_language(x)),
        "passed_through_languages": sorted(x for x in langs if not enabled or not nemo_language(x)),
    }


def prebuild(languages: Iterable[str]) -> dict[str, float]:
    """Compile (or load) each language's grammars into the cache; seconds per language."""
    out = {}
    for language in languages:
        t0 = time.perf_counter()
        get_normalizer(language)
        out[language] = round(time.perf_counter() - t0, 2)
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m accord.tokenize.textnorm en de``: compile the languages' grammars into the cache
    once (scripts/setup.sh); a language already there costs nothing."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("languages", nargs="*", default=["en", "de", "es", "fr"])
    args = p.parse_args(argv)
    todo = [x for x in args.languages if not (grammar_dir(x) / READY).exists()]
    for lang, s in prebuild(todo).items():
        print(f"textnorm: {lang} grammars compiled in {s} s into {grammar_dir(lang)}")


if __name__ == "__main__":
    main()
