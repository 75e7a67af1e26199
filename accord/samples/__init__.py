"""Deterministic test audio: the sample raw bucket and the malformed-input corpus.

``make_bucket`` builds long multi-sentence recordings from the apt TTS engines (espeak-ng,
flite, festival) with silences, noise and music, in many containers, rates and channel
layouts, plus a ``truth.json`` of where every sentence is. ``make_malformed`` builds broken
inputs with the error kind the pipeline must report for each (see ``malformed.ERROR_KINDS``).
Both are cached under ``$ACCORD_CACHE/samples``.
"""

from accord.samples.bucket import Bucket, cut_sentences, make_bucket
from accord.samples.malformed import ERROR_KINDS, Malformed, make_malformed

__all__ = ["ERROR_KINDS", "Bucket", "Malformed", "cut_sentences", "make_bucket", "make_malformed"]
