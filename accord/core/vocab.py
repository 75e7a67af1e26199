"""The one definition of accord's text + control token vocabulary (ZONOS2 order).

Layout: PAD 0, UNK 1, BOS 2, EOS 3, legacy ids 4..191 (reserved, never emitted), UTF-8
byte ``b`` at ``192 + b``, then control tokens: speaking-rate buckets, one bucket range
per quality feature, background markers, and the accurate-transcript / Quality-Mode
marker. Bucket *edges* are data (``VocabConfig``); only their counts shape the id space.
The text padding id used on audio rows is ``text_vocab`` (the embedding has
``text_vocab + 1`` rows), as in ZONOS2's checkpoint layout.
"""

from __future__ import annotations

import bisect
import math
import numbers
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

# ZONOS2's speaker-background markers, in its order: is the speaker prompt clean or noisy.
BACKGROUND_MARKERS: tuple[str, ...] = ("clean", "noisy")
# Manifest / augmentation background labels and the marker each maps to.
BACKGROUND_LABELS: dict[str, str] = {"clean": "clean", "noisy": "noisy", "noise": "noisy", "music": "noisy"}


@dataclass(frozen=True)
class VocabConfig:
    """Bucket edges for the control tokens. ``len(edges) + 1`` buckets per feature."""

    # UTF-8 bytes per second of the punctuation-free transcript.
    speaking_rate_edges: tuple[float, ...] = (8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0)
    quality_edges: dict[str, tuple[float, ...]] = field(
        default_factory=lambda: {
            "snr_db": (10.0, 20.0, 30.0, 40.0),
            "bandwidth_hz": (4000.0, 8000.0, 12000.0, 16000.0),
            "agreement": (0.5, 0.7, 0.85, 0.95),
        }
    )

    # Lowest value of each quality feature's first bucket, for ZONOS2's bucket labels ("lo-hi").
    quality_floors: dict[str, float] = field(
        default_factory=lambda: {"snr_db": -50.0, "bandwidth_hz": 0.0, "agreement": 0.0}
    )

    # Background marker from features: below this SNR a clip is "noisy" unless a feature says
    # otherwise (a ``background`` feature of "clean" / "noise" / "music" wins).
    background_snr_db: float = 15.0

    def __hash__(self) -> int:  # dict field: hash by content
        return hash(
            (
                self.speaking_rate_edges,
                tuple((k, v) for k, v in self.quality_edges.items()),
                tuple(self.quality_floors.items()),
                self.background_snr_db,
            )
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``tokenize.json``, ``params.json``)."""
        return {
            "speaking_rate_edges": list(self.speaking_rate_edges),
            "quality_edges": {k: list(v) for k, v in self.quality_edges.items()},
            # token order of the quality features: a JSON writer may sort the dict's keys
            "quality_features": list(self.quality_edges),
            "quality_floors": dict(self.quality_floors),
            "background_snr_db": self.background_snr_db,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VocabConfig:
        default = cls()
        edges = d.get("quality_edges", default.quality_edges)
        order = d.get("quality_features", list(edges))
        if sorted(order) != sorted(edges):
            raise ValueError(f"quality_features {order} do not name the quality_edges {list(edges)}")
        return cls(
            speaking_rate_edges=tuple(
                float(e) for e in d.get("speaking_rate_edges", default.speaking_rate_edges)
            ),
            quality_edges={k: tuple(float(e) for e in edges[k]) for k in order},
            quality_floors={k: float(v) for k, v in d.get("quality_floors", default.quality_floors).items()},
            background_snr_db=float(d.get("background_snr_db", default.background_snr_db)),
        )


class Vocab:
    """Token ids for text and control tokens under one ``VocabConfig``."""

    def __init__(self, config: VocabConfig | None = None) -> None:
        self.config = config or VocabConfig()
        next_id = BYTE_OFFSET + N_BYTES
        self.rate_offset = next_id
        self.n_rate = len(self.config.speaking_rate_edges) + 1
        next_id += self.n_rate
        self.quality_offsets: dict[str, int] = {}
        for name, edges in self.config.quality_edges.items():
            self.quality_offsets[name] = next_id
            next_id += len(edges) + 1
        self.background_offset = next_id
        next_id += len(BACKGROUND_MARKERS)
        self.quality_mode_id = next_id
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
        return self.rate_offset + bisect.bisect_right(self.config.speaking_rate_edges, bytes_per_second)

    def quality_token(self, feature: str, value: float) -> int:
        if feature not in self.quality_offsets:
            raise KeyError(f"unknown quality feature {feature!r}; known: {sorted(self.quality_offsets)}")
        return self.quality_offsets[feature] + bisect.bisect_right(self.config.quality_edges[feature], value)

    def background_token(self, marker: str) -> int:
        """Marker id for "clean" or "noisy" (the labels "noise" and "music" mean "noisy")."""
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

    def control_tokens(self, features: Mapping[str, Any], quality_mode: bool = False) -> list[int]:
        """Control-token ids for one clip, in vocabulary order: rate, quality buckets, background, mode.

        ``features`` holds the manifest features (``speaking_rate``, ``snr_db``, ...) and
        ``agreement``. A missing or non-finite feature emits no token for it, so the model learns
        to speak without that control. ``quality_mode`` adds the accurate-transcript marker
        (Quality Mode), set by the trainer for clips whose transcripts agree exactly.
        """
        ids: list[int] = []
        rate = features.get("speaking_rate")
        if _finite(rate):
            ids.append(self.rate_token(float(rate)))
        for name in self.quality_offsets:
            value = features.get(name)
            if _finite(value):
                ids.append(self.quality_token(name, float(value)))
        ids.append(self.background_token(self.background_marker(features)))
        if quality_mode:
            ids.append(self.quality_mode_id)
        return ids

    def zonos2_params(self) -> dict[str, Any]:
        """The conditioning fields of ZONOS2's ``params.json`` that describe this vocabulary.

        ZONOS2's server locates control tokens from the tail of ``text_vocab``: speaking-rate
        buckets, quality buckets per feature, 2 speaker-background markers, the accurate-mode
        marker. Buckets are advertised as range labels ("8-10", "20+") that it parses.
        """

        def labels(floor: float, edges: tuple[float, ...]) -> list[str]:
            bounds = [floor, *edges]
            return [f"{_num(lo)}-{_num(hi)}" for lo, hi in zip(bounds, edges, strict=False)] + [
                f"{_num(edges[-1])}+"
            ]

        quality = {
            name: labels(self.config.quality_floors.get(name, 0.0), edges)
            for name, edges in self.config.quality_edges.items()
        }
        return {
            "speaking_rate_num_buckets": self.n_rate,
            "speaking_rate_buckets": labels(0.0, self.config.speaking_rate_edges),
            "quality_features": list(quality),
            "quality_buckets": quality,
            "quality_num_buckets": sum(len(v) for v in quality.values()),
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
            if off <= token_id < off + len(self.config.quality_edges[name]) + 1:
                return f"<{name}:{token_id - off}>"
        if self.background_offset <= token_id < self.background_offset + len(BACKGROUND_MARKERS):
            return f"<background:{BACKGROUND_MARKERS[token_id - self.background_offset]}>"
        if token_id == self.quality_mode_id:
            return "<quality_mode>"
        if token_id == self.text_pad_id:
            return "<text_pad>"
        raise ValueError(f"id {token_id} is outside the vocabulary (size {self.size})")


def _num(x: float) -> str:
    return f"{x:g}"


def _finite(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


DEFAULT_VOCAB = Vocab()
TEXT_VOCAB_SIZE = DEFAULT_VOCAB.size
