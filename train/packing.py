"""Micro-batch tensors: one clip's :class:`Example`, the packed :class:`Batch`, :func:`collate`,
and :func:`rng_for`, the keyed generator every per-clip random choice of the loader draws from."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def rng_for(seed: int, *keys: Any) -> np.random.Generator:
    """A generator keyed on the seed and any stable keys (epoch, clip id, purpose)."""
    words = [seed & 0xFFFFFFFF] + [zlib.crc32(str(k).encode()) for k in keys]
    return np.random.default_rng(words)


# --- packing ----------------------------------------------------------------------------------


@dataclass
class Example:
    """One clip's training sequence (built by ``accord.train.examples``)."""

    clip_id: str
    ids_TC: torch.Tensor  # int64 [T, K+1]
    mask_TK: torch.Tensor  # bool [T, K]: row t's audio ids are prediction targets
    speaker_S: torch.Tensor | None = None  # raw speaker embedding for row 0, or None


@dataclass
class Batch:
    ids_BTC: torch.Tensor
    mask_BTK: torch.Tensor
    doc_ids_BT: torch.Tensor
    speaker_NS: torch.Tensor | None
    speaker_pos_N2: torch.Tensor | None
    clip_ids: list[str]
    n_frames: int  # real (non-pad) rows

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        mv = lambda t: None if t is None else fn(t)  # noqa: E731
        return Batch(
            mv(self.ids_BTC),
            mv(self.mask_BTK),
            mv(self.doc_ids_BT),
            mv(self.speaker_NS),
            mv(self.speaker_pos_N2),
            self.clip_ids,
            self.n_frames,
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """Page-locked copies: a ``non_blocking`` upload from them does not make the host wait."""
        return self._map(torch.Tensor.pin_memory)

    def to_device(self, device: torch.device) -> Batch:
        """On ``device`` without a host sync: CUDA uploads go from pinned memory, asynchronously.

        A copy from pageable memory is synchronous (the host waits for the stream); pinning
        costs one host memcpy and lets the upload overlap with the previous micro-batch.
        """
        if device.type == "cuda":
            return self.pin_memory().to(device, non_blocking=True)
        return self.to(device)


def collate(rows: list[list[Example]], audio_pad_id: int, text_pad_id: int, pad_to: int = 8) -> Batch:
    """Pack rows of examples into padded tensors; pad rows get doc id -1 and no loss."""
    lens = [sum(e.ids_TC.shape[0] for e in row) for row in rows]
    T = max(lens)
    T = (T + pad_to - 1) // pad_to * pad_to
    C = rows[0][0].ids_TC.shape[1]
    K = C - 1
    B = len(rows)
    ids = torch.full((B, T, C), audio_pad_id, dtype=torch.long)
    ids[:, :, K] = text_pad_id
    mask = torch.zeros((B, T, K), dtype=torch.bool)
    doc = torch.full((B, T), -1, dtype=torch.long)
    spk: list[torch.Tensor] = []
    pos: list[tuple[int, int]] = []
    clip_ids: list[str] = []
    for b, row in enumerate(rows):
        t = 0
        for d, e in enumerate(row):
            n = e.ids_TC.shape[0]
            ids[b, t : t + n] = e.ids_TC
            mask[b, t : t + n] = e.mask_TK
            doc[b, t : t + n] = d
            if e.speaker_S is not None:
                spk.append(e.speaker_S.float())
                pos.append((b, t))
            clip_ids.append(e.clip_id)
            t += n
    return Batch(
        ids_BTC=ids,
        mask_BTK=mask,
        doc_ids_BT=doc,
        speaker_NS=torch.stack(spk) if spk else None,
        speaker_pos_N2=torch.tensor(pos, dtype=torch.long) if pos else None,
        clip_ids=clip_ids,
        n_frames=sum(lens),
    )
