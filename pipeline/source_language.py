"""A source's own language, from all its clips: the prior a single clip's language ID lacks.

Whisper base identifies a 1-3 s clip's language from that clip alone, and on real recordings it
is sometimes confidently wrong: an English clip under 10 dB of noise heard as Dutch at 0.92, a
German proverb's first words as Hungarian at 0.54 (its second half: German). Whisper then
decodes in that language, and the text identifier agrees with the result ("Ewa fijnlijk." reads
as Dutch), so nothing downstream can tell. But a source is mostly one language: the language
that holds most of its confidently identified speech is a second opinion that sees minutes, not
seconds. A clip that departs from it needs evidence of its own (the stage gates
``min_language_prob_off_source`` and ``min_duration_off_source_s``, :mod:`accord.core.eligibility`);
a real code switch passes (German inside an English source scored 0.75-0.99 over 2.6 s).

The language ID step also identifies the language of each source's clips joined (up to 30 s
per batch of clips: ``source_lid``), which hears what no single clip does: the German proverb's
two clips scored Hungarian 0.54 and German 0.58 alone, and German when joined; an English
recording under 0 dB of white noise, English 0.96 joined while one clip read Dutch. Those votes
decide; without them (no LID step), the clips' own languages do. Computed when a source's last
clip is in (the ingest driver's commit), so a long source's clips, streamed in several blocks,
are all counted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from accord.core.clip import float_or_nan
from accord.pipeline.steps.lid import SOURCE_LID_KEY

CONFIDENT = 0.5  # clips identified at least this surely vote; if none is, every clip does


def source_language(rows: Sequence[Mapping[str, Any]]) -> str:
    """The language with the most speech in ``rows`` (one source's clips): each clip votes its
    duration times probability for its source-level identification (``source_lid``) if it has
    one, else for its own language (clips at ``CONFIDENT`` or more, or all if none is); "" when
    nothing has a language."""
    votes: dict[str, float] = defaultdict(float)
    joined = [r for r in rows if (r.get(SOURCE_LID_KEY) or ("",))[0]]
    if joined:
        for r in joined:
            lang, prob = r[SOURCE_LID_KEY]
            votes[str(lang)] += _weight(r, prob)
    else:
        sure = [r for r in rows if r.get("language") and float_or_nan(r.get("language_prob")) >= CONFIDENT]
        for r in sure or [r for r in rows if r.get("language")]:
            votes[str(r["language"])] += _weight(r, r.get("language_prob"))
    return max(sorted(votes), key=lambda k: votes[k]) if votes else ""


def _weight(row: Mapping[str, Any], prob: Any) -> float:
    p, d = float_or_nan(prob), float_or_nan(row.get("duration_s"))
    return (d if d == d else 1.0) * (p if p == p else 0.5)


def with_source_language(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with ``source_language`` set on each."""
    lang = source_language(rows)
    return [{**r, "source_language": lang} for r in rows]
