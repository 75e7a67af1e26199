"""Per-stage eligibility: thresholds as data, one function (:func:`eligible_for`) applied at
ingest and again at every read.

Ingest records ``eligible_<stage>`` columns with the run's thresholds; the manifest tools and
tokenize recompute them from the clip's stored signals with the thresholds in force, and so does
the trainer's stage selection (from ``samples.parquet``, which carries every signal a threshold
reads), never trusting a stored flag. Changing a threshold never needs a re-ingest or a
re-tokenize, and means the same at all three. One spelling of overrides everywhere (ingest
config, ``accord manifest --thresholds``, ``accord tokenize --eligibility``, a recipe's
``data.eligibility``): ``{stage: {threshold: value}}``, read by :func:`load_thresholds`.
Tokenize records its overrides in ``tokenize.json`` (``eligibility``, :func:`threshold_overrides`),
and the trainer starts from them, so relaxing a threshold at tokenize relaxes training too.

Stages go from lenient (``pretrain``) to strict (``anneal2``); the defaults are monotone, so a
clip eligible for a stage is eligible for every earlier one.

A missing or NaN feature fails any threshold that is active for it; a threshold left at its
neutral default (0 agreement, -inf SNR, empty allow-list, ...) never looks at the value.

ASR agreement is judged among the systems that support a clip's language (``n_asr``): a clip
that one capable system transcribed is *single-system*, not disagreeing; ``min_asr_systems``
decides which stages take it, and ``min_agreement`` applies to clips with two or more systems.
A clip whose every transcript failed its sanity checks (``hallucinated``) is not eligible for
any stage by default (``reject_hallucinated``).

The language of a clip's transcripts, identified from their text, must not contradict the
language identified from its audio (``language_check``, :mod:`accord.pipeline.text_lid`): a
transcript decoded in the wrong language (Mandarin heard as Thai, Swedish as Thai with the text
"M") is eligible nowhere by default (``reject_language_mismatch``), and the anneal stages take
only clips whose text confirms the language (``require_language_agreement``), so a clip whose
text is too short to tell is pretrain/midtrain material at most. A clip identified in another
language than most of its source's speech (``source_language``) needs a confident identification
(``min_language_prob_off_source``, 0.7) over enough speech (``min_duration_off_source_s``, 2 s):
a German sentence inside an English source scored 0.75-0.99 over 2.6 s, while the wrongly
identified clips of real recordings scored 0.54 over 2.3 s (a German proverb heard as Hungarian)
and 0.92 over 1.4 s (English under 10 dB of noise heard as Dutch), and their transcripts read as
the wrong language.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from accord.core.clip import LANGUAGE_AGREES, LANGUAGE_DIFFERS, float_or_nan
from accord.core.config import did_you_mean, read_yaml
from accord.core.errors import ConfigError, UserError
from accord.core.stages import STAGES

BOOLEAN_THRESHOLDS: tuple[str, ...] = (
    "reject_hallucinated",
    "reject_language_mismatch",
    "require_language_agreement",
)


@dataclass(frozen=True)
class StageThresholds:
    min_agreement: float = 0.0
    min_duration_s: float = 0.0
    max_duration_s: float = math.inf
    min_snr_db: float = -math.inf
    min_bandwidth_hz: float = 0.0
    min_speaking_rate: float = 0.0  # UTF-8 bytes per second of speech
    max_speaking_rate: float = math.inf
    min_language_prob: float = 0.0  # consensus language probability (NaN fails when > 0)
    languages: tuple[str, ...] = ()  # allow-list of ISO 639-1 codes; empty allows any
    min_language_prob_off_source: float = 0.0  # language_prob a clip needs when not its source's language
    min_duration_off_source_s: float = 0.0  # ... and its duration
    max_leading_silence_s: float = math.inf
    max_trailing_silence_s: float = math.inf
    min_asr_systems: float = 0.0  # systems that support the clip's language (``n_asr``)
    reject_hallucinated: bool = False  # drop clips whose every transcript failed its checks
    reject_language_mismatch: bool = False  # drop clips whose text is in another language than the audio
    require_language_agreement: bool = False  # keep only clips whose text confirms the audio's language
    min_dnsmos_ovrl: float = -math.inf  # DNSMOS P.835 overall (NaN: unscorable, fails when set)
    min_speaker_consistency: float = -math.inf  # share of the speech the main voice holds
    min_speaker_split_sim: float = -math.inf  # lowest before/after speaker cosine (a second voice)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], base: StageThresholds | None = None) -> StageThresholds:
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            named = ", ".join(f"{k!r}{did_you_mean(k, known)}" for k in unknown)
            raise ConfigError(f"unknown threshold(s) {named}; known: {', '.join(known)}")
        values = dict(data)
        if "languages" in values:
            langs = values["languages"]
            values["languages"] = tuple([langs] if isinstance(langs, str) else (langs or ()))
        for k, v in values.items():
            if k in BOOLEAN_THRESHOLDS:
                if not isinstance(v, bool):
                    raise ConfigError(f"{k} must be true or false, not {v!r}")
            elif k != "languages" and v is not None:
                try:
                    values[k] = float(v)
                except (TypeError, ValueError):
                    raise ConfigError(f"{k}: expected a number, got {v!r}") from None
        return replace(base or cls(), **values)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["languages"] = list(self.languages)
        return d


DEFAULT_THRESHOLDS: dict[str, StageThresholds] = {
    "pretrain": StageThresholds(
        min_snr_db=3.0,  # mostly noise: at <= 0 dB the noise holds half the power (the estimate: +-3 dB)
        min_language_prob_off_source=0.7,
        min_duration_off_source_s=2.0,
        min_agreement=0.3,
        min_duration_s=0.5,
        max_duration_s=30.0,
        max_speaking_rate=40.0,
        min_asr_systems=1,
        reject_hallucinated=True,
        reject_language_mismatch=True,
    ),
    "midtrain": StageThresholds(
        min_language_prob_off_source=0.7,
        min_duration_off_source_s=2.0,
        min_asr_systems=1,
        reject_hallucinated=True,
        reject_language_mismatch=True,
        min_agreement=0.6,
        min_duration_s=1.0,
        max_duration_s=30.0,
        min_snr_db=5.0,
        min_bandwidth_hz=3000.0,
        min_speaking_rate=2.0,
        max_speaking_rate=35.0,
    ),
    "anneal1": StageThresholds(
        min_language_prob_off_source=0.7,
        min_duration_off_source_s=2.0,
        min_agreement=0.8,
        min_duration_s=1.0,
        max_duration_s=30.0,
        min_snr_db=15.0,
        min_bandwidth_hz=4000.0,
        min_speaking_rate=4.0,
        max_speaking_rate=30.0,
        min_language_prob=0.7,
        max_leading_silence_s=1.0,
        max_trailing_silence_s=1.0,
        min_asr_systems=2,
        reject_hallucinated=True,
        reject_language_mismatch=True,
        require_language_agreement=True,
        min_dnsmos_ovrl=3.0,
        min_speaker_consistency=0.8,
        min_speaker_split_sim=0.65,
    ),
    "anneal2": StageThresholds(
        min_language_prob_off_source=0.7,
        min_duration_off_source_s=2.0,
        min_agreement=0.9,
        min_duration_s=1.5,
        max_duration_s=30.0,
        min_snr_db=25.0,
        min_bandwidth_hz=6000.0,
        min_speaking_rate=5.0,
        max_speaking_rate=25.0,
        min_language_prob=0.7,
        max_leading_silence_s=0.6,
        max_trailing_silence_s=0.6,
        min_asr_systems=2,
        reject_hallucinated=True,
        reject_language_mismatch=True,
        require_language_agreement=True,
        min_dnsmos_ovrl=3.0,
        min_speaker_consistency=0.8,
        min_speaker_split_sim=0.65,
    ),
}


# How a thresholds file looks: the fix a message about a bad one names.
THRESHOLDS_EXAMPLE = (
    "a thresholds file is a YAML mapping of stage -> thresholds, e.g. 'anneal1: {min_snr_db: 12}', "
    "at top level or under 'eligibility:'"
)


def load_thresholds(
    config: str | Mapping[str, Mapping[str, Any]] | None = None,
    base: Mapping[str, StageThresholds] | None = None,
    path: str = "eligibility",
) -> dict[str, StageThresholds]:
    """``base`` (the defaults when None) overridden per stage by ``config``: a mapping
    ``{stage: {threshold: value}}`` (or of built :class:`StageThresholds`) or a YAML file (any
    URI) holding one, at top level, under ``eligibility:`` or under ``ingest: eligibility:`` (so
    a run config file serves as a thresholds file).

    A missing file, an unknown stage or threshold, or a bad value is a
    :class:`~accord.core.errors.UserError` whose one line names it (by its dotted ``path`` for
    a mapping, by the file otherwise) and the fix.
    """
    if isinstance(config, str):
        uri = config
        try:
            data = read_yaml(uri, what="thresholds file")
            config = data.get("eligibility", (data.get("ingest") or {}).get("eligibility", data))
            if not isinstance(config, Mapping):
                raise ConfigError(f"thresholds file {uri}: eligibility holds {config!r}, not a mapping")
            return _overrides(config, base, "")
        except UserError as e:
            message = str(e) if str(e).startswith("thresholds file") else f"thresholds file {uri}: {e}"
            raise type(e)(f"{message} ({THRESHOLDS_EXAMPLE})") from None
    if config is not None and not isinstance(config, Mapping):
        raise ConfigError(f"{path}: expected a mapping of stage -> thresholds, got {config!r}")
    return _overrides(config or {}, base, path)


def _overrides(
    config: Mapping[str, Any], base: Mapping[str, StageThresholds] | None, path: str
) -> dict[str, StageThresholds]:
    out = dict(base or DEFAULT_THRESHOLDS)
    for stage, values in config.items():
        where = f"{path}.{stage}" if path else str(stage)
        if isinstance(values, StageThresholds):  # thresholds already built
            out[stage] = values
            continue
        if stage not in STAGES:
            if stage in _NEUTRAL:
                raise ConfigError(
                    f"{path or 'eligibility'}: overrides are keyed by stage: write {{<stage>: "
                    f"{{{stage}: ...}}}}, e.g. {{anneal1: {{{stage}: ...}}}}, not {{{stage}: ...}}"
                )
            raise ConfigError(
                f"{where}: unknown stage {stage!r}{did_you_mean(stage, STAGES)}; expected one of "
                f"{', '.join(STAGES)}"
            )
        if values is not None and not isinstance(values, Mapping):
            raise ConfigError(f"{where}: expected a mapping of threshold -> value, got {values!r}")
        try:
            out[stage] = StageThresholds.from_mapping(values or {}, base=out[stage])
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
    return out


def threshold_overrides(thresholds: Mapping[str, StageThresholds]) -> dict[str, dict[str, Any]]:
    """``thresholds`` as the overrides of the defaults that rebuild them through
    :func:`load_thresholds`: ``{stage: {threshold: value}}``, JSON-ready (an infinite limit is
    the string ``"inf"`` / ``"-inf"``, which ``float`` reads back)."""
    out: dict[str, dict[str, Any]] = {}
    for stage in STAGES:
        t, d = thresholds[stage], DEFAULT_THRESHOLDS[stage]
        diff: dict[str, Any] = {}
        for f in fields(StageThresholds):
            v = getattr(t, f.name)
            if v == getattr(d, f.name):
                continue
            if f.name == "languages":
                v = list(v)
            elif isinstance(v, float) and math.isinf(v):
                v = "inf" if v > 0 else "-inf"
            diff[f.name] = v
        if diff:
            out[stage] = diff
    return out


_NEUTRAL: dict[str, Any] = {f.name: f.default for f in fields(StageThresholds)}


def _num(row: Mapping[str, Any], key: str) -> float:
    return float_or_nan(row.get(key))


def asr_systems(row: Mapping[str, Any]) -> float:
    """``n_asr``, else (a version-1 manifest row) the number of its transcripts, else NaN."""
    n = _num(row, "n_asr")
    if math.isnan(n) and row.get("transcripts") is not None:
        n = float(len(row["transcripts"]))
    return n


def failures(row: Mapping[str, Any], t: StageThresholds) -> list[str]:
    """Names of the thresholds ``row`` fails (empty when eligible)."""
    out: list[str] = []

    def at_least(key: str, limit: float, name: str) -> None:
        if limit > _NEUTRAL[name]:
            v = _num(row, key)
            if not v >= limit:  # NaN fails
                out.append(name)

    def at_most(key: str, limit: float, name: str) -> None:
        if limit < _NEUTRAL[name]:
            v = _num(row, key)
            if not v <= limit:
                out.append(name)

    n_asr = asr_systems(row)
    if not n_asr < 2:  # single-system clips have no agreement: min_asr_systems judges them
        at_least("agreement", t.min_agreement, "min_agreement")
    if t.min_asr_systems > _NEUTRAL["min_asr_systems"] and not n_asr >= t.min_asr_systems:
        out.append("min_asr_systems")
    if t.reject_hallucinated and row.get("hallucinated") is True:
        out.append("reject_hallucinated")
    check = row.get("language_check")
    if t.reject_language_mismatch and check == LANGUAGE_DIFFERS:
        out.append("reject_language_mismatch")
    if t.require_language_agreement and check != LANGUAGE_AGREES:
        out.append("require_language_agreement")
    at_least("dnsmos_ovrl", t.min_dnsmos_ovrl, "min_dnsmos_ovrl")
    at_least("speaker_consistency", t.min_speaker_consistency, "min_speaker_consistency")
    at_least("speaker_split_sim", t.min_speaker_split_sim, "min_speaker_split_sim")
    at_least("duration_s", t.min_duration_s, "min_duration_s")
    at_most("duration_s", t.max_duration_s, "max_duration_s")
    at_least("snr_db", t.min_snr_db, "min_snr_db")
    at_least("bandwidth_hz", t.min_bandwidth_hz, "min_bandwidth_hz")
    at_least("speaking_rate", t.min_speaking_rate, "min_speaking_rate")
    at_most("speaking_rate", t.max_speaking_rate, "max_speaking_rate")
    at_least("language_prob", t.min_language_prob, "min_language_prob")
    at_most("leading_silence_s", t.max_leading_silence_s, "max_leading_silence_s")
    at_most("trailing_silence_s", t.max_trailing_silence_s, "max_trailing_silence_s")
    if t.languages and str(row.get("language") or "") not in t.languages:
        out.append("languages")
    source = str(row.get("source_language") or "")
    off_source = bool(source) and str(row.get("language") or "") != source
    if off_source:
        at_least("language_prob", t.min_language_prob_off_source, "min_language_prob_off_source")
        at_least("duration_s", t.min_duration_off_source_s, "min_duration_off_source_s")
    return out


def eligible_for(
    row: Mapping[str, Any], stage: str, thresholds: Mapping[str, StageThresholds] | None = None
) -> bool:
    """Whether ``row`` (a clip's stored signals) is eligible for ``stage`` under ``thresholds``
    (defaults when None): the one definition of eligibility, at ingest, tokenize and train."""
    return not failures(row, (thresholds or DEFAULT_THRESHOLDS)[stage])


def eligible(
    row: Mapping[str, Any], thresholds: Mapping[str, StageThresholds] | None = None
) -> dict[str, bool]:
    """``{stage: bool}`` for every stage, under ``thresholds`` (defaults when None)."""
    return {stage: eligible_for(row, stage, thresholds) for stage in STAGES}
