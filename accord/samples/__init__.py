"""Deterministic test audio: the sample raw bucket and the malformed-input corpus.

``make_bucket`` builds long multi-sentence recordings from the apt TTS engines (espeak-ng,
flite, festival) with silences, noise and music, in many containers, rates and channel
layouts, plus a ``truth.json`` of where every sentence is. ``make_malformed`` builds broken
inputs with the error kind the pipeline must report for each (see ``malformed.ERROR_KINDS``).
``make_signals`` builds one file per quality signal next to its control. All are cached under
``$ACCORD_CACHE/samples``.
"""

from pathlib import Path

from accord.samples.bucket import Bucket, cut_sentences, make_bucket
from accord.samples.malformed import ERROR_KINDS, Malformed, make_malformed
from accord.samples.signals import Signals, make_signals

# Stage thresholds for these synthetic voices (DNSMOS scores TTS lower than real speech): a run
# config that ingest, the manifest tools and tokenize read (see the file).
TTS_ELIGIBILITY = Path(__file__).with_name("tts_eligibility.yaml")

__all__ = [
    "ERROR_KINDS",
    "TTS_ELIGIBILITY",
    "Bucket",
    "Malformed",
    "Signals",
    "cut_sentences",
    "make_bucket",
    "make_malformed",
    "make_signals",
]
