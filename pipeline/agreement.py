"""Pairwise WER/CER between ASR systems and the clip's agreement score.

Definitions (recorded in the manifest as ``pairs`` and ``agreement``):

- Every transcript is normalised with :func:`accord.pipeline.wer_norm.normalize` for the
  clip's language.
- For each unordered pair (a, b) of systems, ``wer`` and ``cer`` are jiwer's rates with a as
  the reference (NaN when a is empty).
- The pair *error* is symmetric: edit operations / max(len(a), len(b)), in words, or in
  characters for languages written without spaces. It lies in [0, 1].
- ``agreement = 1 - mean pair error`` over pairs with evidence, in [0, 1].
- Evidence: a pair where both transcripts are empty says nothing (skipped); one empty and
  one not is error 1. A clip with two or more transcripts but only empty pairs has no
  agreement evidence and gets ``agreement = 0``: it can never pass an agreement threshold.
- Only systems that support the clip's language transcribe it (:mod:`accord.pipeline.steps.asr`);
  ``n_asr`` counts them. A clip that a single capable system transcribed is *single-system*:
  ``agreement`` is NaN (there is nothing to agree with, which is not disagreement), and the
  stage thresholds decide what it may enter (``min_asr_systems``; by default pretrain and
  midtrain take it, the anneal stages need two systems).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from itertools import combinations

from accord.core.clip import float_or_nan
from accord.pipeline.wer_norm import is_char_scored, normalize


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    wer: float
    cer: float
    error: float  # symmetric, see module docstring; NaN when neither side has text


def _edits(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance between token lists."""
    if not ref or not hyp:
        return max(len(ref), len(hyp))
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def _rate(ref: str, hyp: str, chars: bool) -> float:
    import jiwer

    if not ref:
        return math.nan
    return float(jiwer.cer(ref, hyp) if chars else jiwer.wer(ref, hyp))


def pair_score(a_name: str, a_norm: str, b_name: str, b_norm: str, language: str) -> Pair:
    chars = is_char_scored(language)
    wer = _rate(a_norm, b_norm, chars=chars)  # words are characters in no-space scripts
    cer = _rate(a_norm, b_norm, chars=True)
    ta, tb = (list(a_norm), list(b_norm)) if chars else (a_norm.split(), b_norm.split())
    error = math.nan if not ta and not tb else _edits(ta, tb) / max(len(ta), len(tb))
    return Pair(a_name, b_name, wer, cer, error)


def score(transcripts: list[dict], language: str) -> tuple[list[dict], float]:
    """Fill ``normalized`` in each transcript (in place); return (pairs, agreement), agreement
    NaN for fewer than two transcripts (single-system, see the module docstring)."""
    for t in transcripts:
        t["normalized"] = normalize(t.get("text") or "", language)
    pairs: list[Pair] = []
    for x, y in combinations(transcripts, 2):
        pairs.append(pair_score(_label(x), x["normalized"], _label(y), y["normalized"], language))
    rows = [{"a": p.a, "b": p.b, "wer": p.wer, "cer": p.cer} for p in pairs]
    if len(transcripts) < 2:
        return rows, math.nan
    errors = [p.error for p in pairs if not math.isnan(p.error)]
    agreement = 1.0 - sum(errors) / len(errors) if errors else 0.0
    return rows, float(min(1.0, max(0.0, agreement)))


def _label(t: dict) -> str:
    return f"{t.get('system', '')}:{t.get('model', '')}"


def consensus_language(transcripts: list[dict]) -> tuple[str, float]:
    """The language of the most confident system that reports a probability, else the majority."""
    scored = [
        t for t in transcripts if t.get("language") and not math.isnan(float_or_nan(t.get("language_prob")))
    ]
    if scored:
        best = max(scored, key=lambda t: float_or_nan(t["language_prob"]))
        return best["language"], float_or_nan(best["language_prob"])
    langs = Counter(t["language"] for t in transcripts if t.get("language"))
    if not langs:
        return "", math.nan
    return langs.most_common(1)[0][0], math.nan
