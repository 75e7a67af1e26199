"""Transcript sanity checks: the hallucinations that ASR agreement cannot see.

Two systems can share a hallucination (Whisper's "Thank you for watching" on noise, a decoding
loop that two models both fall into), and then they agree. Each transcript is checked alone
against what a transcript of real speech looks like (after NeMo Granary's hallucination filters
and Whisper's own fallback rules):

- ``repeat_ratio``: the share of word n-grams (character n-grams for languages written without
  spaces) that repeat an earlier one: a loop ("the cat sat the cat sat the cat sat") is high,
  normal speech is ~0;
- ``compression_ratio``: UTF-8 bytes over zlib-compressed bytes, Whisper's loop detector
  (its fallback threshold is 2.4);
- ``repeated_tail``: the share of the tokens inside the two copies of the longest run of at
  least ``min_span`` words (``min_span_chars`` characters) that ends the text and was said
  before. A loop of two ("Hors huslekar det börja i översä och huslekar det börja i översä",
  Whisper base on a Swedish read sentence it half dropped) is under both measures above: n-gram
  repeats need three copies to pass half, and a short text barely compresses. A decoder's loop
  runs to the end of its window; a speaker's repetition goes on to new words ("it was the age of
  wisdom, it was the age of foolishness" reads 0);
- ``chars_per_s``: characters (no spaces or punctuation) per second of the clip's speech (the
  clip minus VAD's leading and trailing silence): people speak ~10-20 (Mandarin and Japanese
  ~4-8); far more is text the audio cannot hold, and far less (``too_little_text``: under one
  character a second over two seconds of speech) is a decoder that dropped most of it, as
  Whisper told the wrong language did on a Swedish clip ("M" for 4 s of speech);
- ``no_speech_prob``: Whisper's probability that a window holds no speech; with a low
  ``avg_logprob`` it is Whisper's own "this was silence" rule.

``flags`` names the checks a transcript fails; an empty transcript is not flagged (agreement
judges it). A clip is ``hallucinated`` when every system's transcript is flagged.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from accord.pipeline.wer_norm import is_char_scored, spoken_text, strip_annotations

MAX_TAIL_TOKENS = 400  # the search is quadratic; 30 s of speech is ~100 words


@dataclass(frozen=True)
class CheckConfig:
    ngram: int = 3  # words (or ngram_chars characters for no-space languages)
    ngram_chars: int = 6
    min_ngrams: int = 4  # fewer n-grams than this cannot show a loop
    max_repeat_ratio: float = 0.5
    max_compression_ratio: float = 2.4  # Whisper's compression_ratio_threshold
    min_span: int = 4  # words (min_span_chars characters for no-space languages) that end the ...
    min_span_chars: int = 8
    max_tail_share: float = 0.5  # ... text, said before: flagged when both copies are more of it
    max_chars_per_s: float = 25.0
    min_chars_per_s: float = 1.0  # ... below this over min_text_speech_s is too little text
    min_text_speech_s: float = 2.0
    min_speech_s: float = 0.2  # a shorter speech span counts as this long
    max_no_speech_prob: float = 0.6  # Whisper's no_speech_threshold ...
    no_speech_logprob: float = -1.0  # ... counted only when avg_logprob is below this


def _tokens(text: str, language: str, cfg: CheckConfig) -> tuple[list[str], int]:
    words = strip_annotations(text).lower().split()
    if is_char_scored(language):
        return list(spoken_text(text.lower())), cfg.ngram_chars
    words = [spoken_text(w) for w in words]
    return [w for w in words if w], cfg.ngram


def repeat_ratio(text: str, language: str = "", cfg: CheckConfig = CheckConfig()) -> float:
    """1 - distinct n-grams / n-grams; 0 for a text too short to have ``min_ngrams`` n-grams."""
    tokens, n = _tokens(text, language, cfg)
    n = min(n, len(tokens))
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)] if n else []
    if len(grams) < cfg.min_ngrams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def repeated_tail(text: str, language: str = "", cfg: CheckConfig = CheckConfig()) -> float:
    """Share of tokens inside both copies of the longest run of at least ``min_span`` tokens
    that ends the text and was said before it (copies apart); 0 when there is none."""
    tokens, _ = _tokens(text, language, cfg)
    tokens = tokens[-MAX_TAIL_TOKENS:]
    n = len(tokens)
    shortest = cfg.min_span_chars if is_char_scored(language) else cfg.min_span
    for k in range(n // 2, shortest - 1, -1):
        tail = tokens[n - k :]
        if any(tokens[i : i + k] == tail for i in range(n - 2 * k + 1)):
            return 2 * k / n
    return 0.0


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def check(
    text: str,
    language: str,
    speech_s: float,
    no_speech_prob: float = math.nan,
    avg_logprob: float = math.nan,
    cfg: CheckConfig = CheckConfig(),
) -> dict[str, object]:
    """The measures and ``flags`` of one transcript."""
    rr, cr = repeat_ratio(text, language, cfg), compression_ratio(text)
    tail = repeated_tail(text, language, cfg)
    cps = len(spoken_text(text)) / max(speech_s, cfg.min_speech_s)
    flags: list[str] = []
    if text.strip():
        if rr > cfg.max_repeat_ratio:
            flags.append("repeat_ratio")
        if cr > cfg.max_compression_ratio:
            flags.append("compression_ratio")
        if tail > cfg.max_tail_share:
            flags.append("repeated_tail")
        if cps > cfg.max_chars_per_s:
            flags.append("chars_per_s")
        if cps < cfg.min_chars_per_s and speech_s >= cfg.min_text_speech_s:
            flags.append("too_little_text")
        if no_speech_prob > cfg.max_no_speech_prob and avg_logprob < cfg.no_speech_logprob:
            flags.append("no_speech_prob")  # NaN compares False: systems without it never flag
    return {
        "repeat_ratio": rr,
        "compression_ratio": cr,
        "chars_per_s": cps,
        "flags": flags,
    }


def all_flagged(transcripts: Sequence[dict]) -> bool:
    """A clip is hallucinated when it has transcripts and every one of them is flagged."""
    return bool(transcripts) and all(t.get("flags") for t in transcripts)
