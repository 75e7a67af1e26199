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
from dataclasses import dataclass, field

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

BACKGROUND_MARKERS: tuple[str, ...] = ("clean", "noise", "music")


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

    def __hash__(self) -> int:  # dict field: hash by content
        return hash((self.speaking_rate_edges, tuple((k, v) for k, v in self.quality_edges.items())))


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
        return self.background_offset + BACKGROUND_MARKERS.index(marker)


DEFAULT_VOCAB = Vocab()
TEXT_VOCAB_SIZE = DEFAULT_VOCAB.size
