"""The one definition of accord's text + control token vocabulary (ZONOS2's release layout).

Layout: PAD 0, UNK 1, BOS 2, EOS 3, legacy ids 4..191 (reserved, never emitted), UTF-8
byte ``b`` at ``192 + b``, then the control tail in ZONOS2's order: speaking-rate buckets,
one bucket range per quality feature, the clean/noisy speaker-background markers, and the
accurate-mode marker. The text padding id on audio rows is ``text_vocab`` (the embedding has
``text_vocab + 1`` rows). Buckets are data: ZONOS2's ``params.json`` advertises them as range
labels ("8-11", "40+", exact "0"), and ``VocabConfig`` holds exactly those labels, so the ids
and the value -> bucket rule are the release's (``zonos2/server/api_server.py``) by
construction. The default is the release layout (``text_vocab`` 519); other layouts are
``VocabConfig`` values and travel with the checkpoint (``to_dict`` / ``zonos2_params``).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PAD_ID = 0
UNK_ID = 1
BOS_ID = 2
EOS_ID = 3
BYTE_OFFSET = 192
N_BYTES = 256

# DAC audio ids (per codebook): 0..1023 codes, 1024 end-of-audio, 1025 audio pad.
N_CODEBOOKS = 9
CODEBOOK_SIZE = 1024
EOA_ID = 1024
AUDIO_PAD_ID = 1025
AUDIO_VOCAB = CODEBOOK_SIZE + 2
# The DAC 44 kHz code layout: one frame of N_CODEBOOKS codes per HOP_LENGTH samples.
CODEC_SAMPLE_RATE = 44100
CODEC_HOP_LENGTH = 512
CODEC_FRAME_RATE = CODEC_SAMPLE_RATE / CODEC_HOP_LENGTH  # 86.1328125 frames/s

# ZONOS2's DAC codes of 0.2 s of silence (17 frames x 9 codebooks, ``tts/prompt.py``
# ``_SILENCE_TOKENS_0_2S``). Every ZONOS2 prompt ends with these frames under the delay
# pattern, so the model starts speaking from silence; accord's training sequences put them
# in front of each clip's codes for the same reason.
SILENCE_FRAMES: tuple[tuple[int, ...], ...] = (
    (568, 778, 338, 524, 967, 360, 728, 550, 90),
    (568, 778, 10, 674, 364, 981, 741, 378, 731),
    *((568, 804, 10, 674, 364, 981, 568, 378, 731),) * 14,
    (568, 778, 721, 842, 264, 974, 989, 507, 308),
)
N_SILENCE_FRAMES = len(SILENCE_FRAMES)  # 17

# ZONOS2's speaker-background markers, in its order: is the speaker prompt clean or noisy.
BACKGROUND_MARKERS: tuple[str, ...] = ("clean", "noisy")
# Manifest / augmentation background labels and the marker each maps to.
BACKGROUND_LABELS: dict[str, str] = {
    "clean": "clean",
    "noisy": "noisy",
    "noise": "noisy",
    "music": "noisy",
    "codec": "noisy",
    "reverb": "noisy",
}
# ZONOS2's request default (``clean_speaker_background=False``): the noisy marker.
INFERENCE_BACKGROUND = "noisy"

# The release's params.json buckets (zonos2.cpp ``SPEAKING_RATE_LABELS`` / ``QUALITY_LABELS``).
RELEASE_SPEAKING_RATE_BUCKETS: tuple[str, ...] = (
    "0-8",
    "8-11",
    "11-14",
    "14-17",
    "17-21",
    "21-28",
    "28-40",
    "40+",
)
_SILENCE_S = ("0-0.05", "0.05-0.1", "0.1-0.25", "0.25-0.5", "0.5-1", "1-2", "2-4", "4+")
RELEASE_QUALITY_BUCKETS: dict[str, tuple[str, ...]] = {
    "lufs": ("-1000--50", "-50--45.5", "-45.5--41", "-41--36.5", "-36.5--32", "-32--27.5",
             "-27.5--23", "-23--18.5", "-18.5--14", "-14--9.5", "-9.5--5", "-5+"),
    "estimated_snr": ("-1000-0", "0-6", "6-12", "12-18", "18-24", "24-30", "30-36", "36-42",
                      "42-48", "48-54", "54-60", "60+"),
    "max_pause": ("0-0.5", "0.5-1", "1-1.5", "1.5-2", "2-2.5", "2.5-3", "3-3.5", "3.5-4",
                  "4-4.5", "4.5-5", "5-5.5", "5.5-6"),
    "estimated_bandlimit_hz": ("495.3-3433", "3433-6371", "6371-9310", "9310-12248",
                               "12248-15186", "15186-18124", "18124-21062", "21062-24000"),
    "leading_silence_s": _SILENCE_S,
    "trailing_silence_s": _SILENCE_S,
}  # fmt: skip
# The manifest column (``accord.core.clip.FEATURE_FIELDS``) each release feature is read from.
RELEASE_QUALITY_COLUMNS: dict[str, str] = {
    "lufs": "loudness_lufs",
    "estimated_snr": "snr_db",
    "max_pause": "longest_pause_s",
    "estimated_bandlimit_hz": "bandwidth_hz",
    "leading_silence_s": "leading_silence_s",
    "trailing_silence_s": "trailing_silence_s",
}
# The release's request default when no quality is given: trailing silence 0.25-0.5 s.
RELEASE_DEFAULT_QUALITY_BUCKETS: dict[str, int] = {"trailing_silence_s": 3}

_NUM = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_EXACT_RE = re.compile(rf"^\s*({_NUM})\s*$")
_CLOSED_RE = re.compile(rf"^\s*({_NUM})\s*-\s*({_NUM})\s*$")
_OPEN_RE = re.compile(rf"^\s*({_NUM})\s*\+\s*$")


@dataclass(frozen=True)
class Bucket:
    """One parsed bucket label: ``exact`` ("0"), or a range ``[lo, hi)`` (``hi`` None = "lo+")."""

    exact: bool
    lo: float
    hi: float | None

    @classmethod
    def parse(cls, label: str) -> Bucket:
        if m := _EXACT_RE.match(label):
            return cls(True, float(m.group(1)), None)
        if m := _CLOSED_RE.match(label):
            lo, hi = float(m.group(1)), float(m.group(2))
            if not hi > lo:
                raise ValueError(f"bucket {label!r} is an empty or inverted range")
            return cls(False, lo, hi)
        if m := _OPEN_RE.match(label):
            return cls(False, float(m.group(1)), None)
        raise ValueError(f"invalid bucket {label!r}; expected '0', '8-11' or '40+'")


def rate_bucket(labels: tuple[str, ...], value: float) -> int:
    """ZONOS2's speaking-rate rule: the first range whose upper end the rate is below (lo-inclusive).

    NaN is refused: the release's rule (``server/api_server.py`` ``_speaking_rate_bucket_for_rate``)
    lets it fall through every comparison into the open top bucket, a fast voice nobody asked for.
    """
    if math.isnan(value):
        raise ValueError("speaking rate is NaN; give a positive rate in UTF-8 bytes per second, or none")
    if not value > 0:
        raise ValueError(f"speaking rate must be positive, got {value}")
    for i, b in enumerate(Bucket.parse(s) for s in labels):
        if b.hi is None or (value < b.hi and not math.isclose(value, b.hi, rel_tol=1e-12, abs_tol=1e-9)):
            return i
    return len(labels) - 1


def quality_bucket(labels: tuple[str, ...], value: float) -> int:
    """ZONOS2's quality rule: an exact label first; else ``lo <= v < hi`` (the last range closed),
    an open range takes ``v >= lo``; values outside all ranges clamp to the first / last range.
    Non-finite values have no bucket (the release drops them, ``api_server.py`` ~l.435)."""
    if not math.isfinite(value):
        raise ValueError(f"quality value {value} is not finite; it has no bucket (leave the feature out)")
    specs = [Bucket.parse(s) for s in labels]
    for i, b in enumerate(specs):
        if b.exact and math.isclose(value, b.lo, rel_tol=1e-12, abs_tol=1e-9):
            return i
    ranges = [i for i, b in enumerate(specs) if not b.exact]
    if not ranges:
        raise ValueError(f"no range bucket holds {value} (labels {labels})")
    for i in ranges:
        b = specs[i]
        if b.hi is None:
            if value >= b.lo:
                return i
        elif (b.lo <= value <= b.hi) if i == ranges[-1] else (b.lo <= value < b.hi):
            return i
    return ranges[0] if value < specs[ranges[0]].lo else ranges[-1]


@dataclass(frozen=True)
class VocabConfig:
    """The control-token layout: bucket labels per control, in token order (ZONOS2's params.json form)."""

    # UTF-8 bytes per second of the cleaned transcript.
    speaking_rate_buckets: tuple[str, ...] = RELEASE_SPEAKING_RATE_BUCKETS
    quality_buckets: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(RELEASE_QUALITY_BUCKETS))
    # manifest column each quality feature is read from (a feature absent here reads its own name)
    quality_columns: dict[str, str] = field(default_factory=lambda: dict(RELEASE_QUALITY_COLUMNS))
    # quality buckets a request gets when it names none (ZONOS2's server and LLM default)
    default_quality_buckets: dict[str, int] = field(
        default_factory=lambda: dict(RELEASE_DEFAULT_QUALITY_BUCKETS)
    )
    # Background marker from features: below this SNR a clip is "noisy" unless a feature says
    # otherwise (a ``background`` feature of "clean" / "noise" / "music" wins).
    background_snr_db: float = 15.0

    def __post_init__(self) -> None:
        for labels in (self.speaking_rate_buckets, *self.quality_buckets.values()):
            for s in labels:
                Bucket.parse(s)
        for name, b in self.default_quality_buckets.items():
            if not 0 <= b < len(self.quality_buckets.get(name, ())):
                raise ValueError(f"default quality bucket {name}={b} is not a bucket of the layout")

    def __hash__(self) -> int:  # dict fields: hash by content
        return hash(
            (
                self.speaking_rate_buckets,
                tuple(self.quality_buckets.items()),
                tuple(self.quality_columns.items()),
                tuple(self.default_quality_buckets.items()),
                self.background_snr_db,
            )
        )

    def column(self, feature: str) -> str:
        return self.quality_columns.get(feature, feature)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``tokenize.json``, a checkpoint's accord extra)."""
        return {
            "speaking_rate_buckets": list(self.speaking_rate_buckets),
            "quality_buckets": {k: list(v) for k, v in self.quality_buckets.items()},
            # token order of the quality features: a JSON writer may sort the dict's keys
            "quality_features": list(self.quality_buckets),
            "quality_columns": dict(self.quality_columns),
            "default_quality_buckets": dict(self.default_quality_buckets),
            "background_snr_db": self.background_snr_db,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VocabConfig:
        """Inverse of ``to_dict``; also reads ZONOS2 params.json keys and accord's pre-release
        form (``speaking_rate_edges`` / ``quality_edges`` / ``quality_floors``)."""
        if "quality_edges" in d or "speaking_rate_edges" in d:
            return _from_edges(d)
        default = cls()
        buckets = d.get("quality_buckets", default.quality_buckets)
        order = d.get("quality_features") or list(buckets)
        if sorted(order) != sorted(buckets):
            raise ValueError(f"quality_features {order} do not name the quality_buckets {list(buckets)}")
        columns = d.get("quality_columns", default.quality_columns)
        defaults = d.get("default_quality_buckets", default.default_quality_buckets)
        return cls(
            speaking_rate_buckets=tuple(
                str(s) for s in d.get("speaking_rate_buckets", default.speaking_rate_buckets)
            ),
            quality_buckets={k: tuple(str(s) for s in buckets[k]) for k in order},
            quality_columns={k: str(v) for k, v in columns.items() if k in buckets},
            default_quality_buckets={k: int(v) for k, v in defaults.items() if k in buckets},
            background_snr_db=float(d.get("background_snr_db", default.background_snr_db)),
        )


def _labels(floor: float, edges: tuple[float, ...]) -> tuple[str, ...]:
    bounds = [floor, *edges]
    return (*(f"{lo:g}-{hi:g}" for lo, hi in zip(bounds, edges, strict=False)), f"{edges[-1]:g}+")


def _from_edges(d: Mapping[str, Any]) -> VocabConfig:
    """accord's pre-release vocabulary form (edges + first-bucket floors), as labels."""
    rate = tuple(float(e) for e in d.get("speaking_rate_edges", ACCORD_V1_RATE_EDGES))
    edges = d.get("quality_edges", ACCORD_V1_QUALITY_EDGES)
    order = d.get("quality_features", list(edges))
    if sorted(order) != sorted(edges):
        raise ValueError(f"quality_features {order} do not name the quality_edges {list(edges)}")
    floors = d.get("quality_floors", ACCORD_V1_QUALITY_FLOORS)
    return VocabConfig(
        speaking_rate_buckets=_labels(0.0, rate),
        quality_buckets={
            k: _labels(float(floors.get(k, 0.0)), tuple(float(e) for e in edges[k])) for k in order
        },
        quality_columns={},
        default_quality_buckets={},
        background_snr_db=float(d.get("background_snr_db", 15.0)),
    )


# accord's layout before the release layout (text_vocab 474): rate edges, then snr_db /
# bandwidth_hz / agreement x 5. Still readable from old checkpoints and constructible.
ACCORD_V1_RATE_EDGES = (8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0)
ACCORD_V1_QUALITY_EDGES = {
    "snr_db": (10.0, 20.0, 30.0, 40.0),
    "bandwidth_hz": (4000.0, 8000.0, 12000.0, 16000.0),
    "agreement": (0.5, 0.7, 0.85, 0.95),
}
ACCORD_V1_QUALITY_FLOORS = {"snr_db": -50.0, "bandwidth_hz": 0.0, "agreement": 0.0}


def accord_v1_config() -> VocabConfig:
    """accord's pre-release layout (474 ids)."""
    return _from_edges({})


class Vocab:
    """Token ids for text and control tokens under one ``VocabConfig``."""

    def __init__(self, config: VocabConfig | None = None) -> None:
        self.config = config or VocabConfig()
        next_id = BYTE_OFFSET + N_BYTES
        self.rate_offset = next_id
        self.n_rate = len(self.config.speaking_rate_buckets)
        next_id += self.n_rate
        self.quality_offsets: dict[str, int] = {}
        for name, labels in self.config.quality_buckets.items():
            self.quality_offsets[name] = next_id
            next_id += len(labels)
        self.background_offset = next_id
        next_id += len(BACKGROUND_MARKERS)
        self.accurate_id = next_id
        next_id += 1
        self.size = next_id  # == ZONOS2 params.json ``text_vocab``

    @property
    def text_pad_id(self) -> int:
        """Text-column id on audio rows (one past the last real id)."""
        return self.size

    def encode_text(self, text: str, bos: bool = True, eos: bool = True) -> list[int]:
        ids = [BYTE_OFFSET + b for b in text.encode("utf-8")]
        return ([BOS_ID] if bos else []) + ids + ([EOS_ID] if eos else [])

    def decode_text(self, ids: list[int]) -> str:
        data = bytes(i - BYTE_OFFSET for i in ids if BYTE_OFFSET <= i < BYTE_OFFSET + N_BYTES)
        return data.decode("utf-8", errors="replace")

    def rate_token(self, bytes_per_second: float) -> int:
        return self.rate_offset + rate_bucket(self.config.speaking_rate_buckets, bytes_per_second)

    def quality_token(self, feature: str, value: float) -> int:
        labels = self._labels(feature)
        return self.quality_offsets[feature] + quality_bucket(labels, value)

    def quality_bucket_token(self, feature: str, bucket: int) -> int:
        """Id of bucket index ``bucket`` of ``feature`` (ZONOS2's ``quality_buckets`` request form)."""
        n = len(self._labels(feature))
        if not 0 <= bucket < n:
            raise ValueError(f"quality bucket for {feature} must be in [0, {n - 1}], got {bucket}")
        return self.quality_offsets[feature] + bucket

    def _labels(self, feature: str) -> tuple[str, ...]:
        if feature not in self.quality_offsets:
            raise KeyError(f"unknown quality feature {feature!r}; known: {list(self.quality_offsets)}")
        return self.config.quality_buckets[feature]

    def quality_values(self, features: Mapping[str, Any]) -> dict[str, float]:
        """The finite quality features of a manifest row, keyed by this vocabulary's feature names."""
        out = {}
        for name in self.quality_offsets:
            v = features.get(self.config.column(name))
            if _finite(v):
                out[name] = float(v)
        return out

    def background_token(self, marker: str) -> int:
        """Marker id for "clean" or "noisy" (the labels "noise", "music", ... mean "noisy")."""
        if marker not in BACKGROUND_LABELS:
            raise KeyError(f"unknown background marker {marker!r}; known: {sorted(BACKGROUND_LABELS)}")
        return self.background_offset + BACKGROUND_MARKERS.index(BACKGROUND_LABELS[marker])

    def background_marker(self, features: Mapping[str, Any]) -> str:
        """ "clean" / "noisy": an explicit ``background`` feature, else from ``snr_db``."""
        explicit = features.get("background")
        if isinstance(explicit, str) and explicit in BACKGROUND_LABELS:
            return BACKGROUND_LABELS[explicit]
        snr = features.get("snr_db")
        if _finite(snr) and float(snr) < self.config.background_snr_db:
            return "noisy"
        return "clean"

    def zonos2_params(self) -> dict[str, Any]:
        """The conditioning fields of ZONOS2's ``params.json`` that describe this vocabulary.

        ZONOS2's server locates control tokens from the tail of ``text_vocab`` using these
        counts and maps request values to buckets by parsing these labels.
        """
        return {
            "speaking_rate_num_buckets": self.n_rate,
            "speaking_rate_buckets": list(self.config.speaking_rate_buckets),
            "quality_features": list(self.config.quality_buckets),
            "quality_buckets": {k: list(v) for k, v in self.config.quality_buckets.items()},
            "quality_num_buckets": sum(len(v) for v in self.config.quality_buckets.values()),
            "speaker_background_token_enabled": True,
            "accurate_mode_token_enabled": True,
        }

    def describe(self, token_id: int) -> str:
        """Human-readable name of any id (for debugging sequences)."""
        if token_id in (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            return ("<pad>", "<unk>", "<bos>", "<eos>")[token_id]
        if token_id < BYTE_OFFSET:
            return f"<legacy:{token_id}>"
        if token_id < BYTE_OFFSET + N_BYTES:
            return f"<byte:{token_id - BYTE_OFFSET:#04x}>"
        if token_id < self.rate_offset + self.n_rate:
            return f"<rate:{token_id - self.rate_offset}>"
        for name, off in self.quality_offsets.items():
            if off <= token_id < off + len(self.config.quality_buckets[name]):
                return f"<{name}:{token_id - off}>"
        if self.background_offset <= token_id < self.background_offset + len(BACKGROUND_MARKERS):
            return f"<background:{BACKGROUND_MARKERS[token_id - self.background_offset]}>"
        if token_id == self.accurate_id:
            return "<accurate>"
        if token_id == self.text_pad_id:
            return "<text_pad>"
        raise ValueError(f"id {token_id} is outside the vocabulary (size {self.size})")


def _finite(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


DEFAULT_VOCAB = Vocab()
TEXT_VOCAB_SIZE = DEFAULT_VOCAB.size
