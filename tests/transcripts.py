"""How a test judges a model's transcript: against what was said, with a tolerance.

A free-running decoder's exact words change with the machine's kernels and with audio
differences far below hearing (``tests/determinism.py``), so a test never asserts one word of
it. It asserts what it is about: that the text is the sentence that was said, in its language,
within an error bound. The bounds were measured on Whisper base over espeak-ng German, the
hardest clip the tests decode: its variants across instruction sets, thread counts and 50 ms
boundary shifts scored CER 0.07-0.28 and WER 0.12-0.50 against the sentence, while the same
sentence heard as English ("Dee kinder spealtin bees tsoom a bent im garden") scores CER 0.30
but WER 0.88, and an unrelated sentence both above 0.6. Both bounds together tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_CER = 0.35
MAX_WER = 0.6


@dataclass(frozen=True)
class Reading:
    cer: float
    wer: float

    def close(self, max_cer: float = MAX_CER, max_wer: float = MAX_WER) -> bool:
        return self.cer <= max_cer and self.wer <= max_wer


def reading(text: str, reference: str, language: str) -> Reading:
    """CER and WER of ``text`` against ``reference``, both normalised for ``language`` (the
    normaliser agreement scoring uses)."""
    import jiwer

    from accord.pipeline.wer_norm import normalize

    ref, hyp = normalize(reference, language), normalize(text, language)
    if not ref:
        raise ValueError(f"empty reference after normalisation: {reference!r}")
    return Reading(float(jiwer.cer(ref, hyp)), float(jiwer.wer(ref, hyp)))


def assert_reads(
    text: str, reference: str, language: str, max_cer: float = MAX_CER, max_wer: float = MAX_WER
) -> None:
    """``text`` is ``reference`` as an ASR system heard it (CER and WER within the bounds)."""
    r = reading(text, reference, language)
    why = f"{text!r} vs {reference!r} ({language}): CER {r.cer:.2f}, WER {r.wer:.2f}"
    assert r.close(max_cer, max_wer), why
