"""One clip's token matrix, shared by the trainer (teacher forcing) and the generator (prompt).

Rows ([T, n_codebooks + 1], audio columns first, text column last):
  row 0            speaker placeholder (audio pad everywhere, text pad); the model replaces
                   its embedding with the projected speaker vector
  control rows     audio pad + one control token each (speaking rate, quality buckets,
                   background marker, Quality-Mode marker), from ``accord.core.vocab``
  text rows        audio pad + BOS, UTF-8 byte ids, EOS
  audio rows       delayed codes (``accord.core.delay.apply_delay``: codebook j shifted by
                   j frames, one EOA after each codebook's last code) + text pad
Loss mask ``[T, K]``: entry (t, j) says "the logit at row t for codebook j is trained on
ids[t + 1, j]" — true exactly where that target is a real code or EOA. Pads before a
codebook starts and after its EOA are deterministic (the generator forces them), so they
carry no loss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from accord.core.delay import apply_delay
from accord.core.vocab import (
    AUDIO_PAD_ID,
    CODEBOOK_SIZE,
    DEFAULT_VOCAB,
    EOA_ID,
    N_CODEBOOKS,
    Vocab,
)


@dataclass
class ClipSequence:
    ids_TC: torch.Tensor  # int64
    loss_mask_TK: torch.Tensor  # bool
    audio_start: int  # index of the first audio row (== prompt length)
    n_frames: int  # codec frames of the clip (0 for a prompt)


def control_tokens(
    vocab: Vocab = DEFAULT_VOCAB,
    *,
    speaking_rate: float | None = None,
    quality: Mapping[str, float] | None = None,
    background: str | None = None,
    quality_mode: bool = False,
) -> list[int]:
    """Control token ids in the vocabulary's order; ``None`` values are left out (dropout)."""
    ids: list[int] = []
    if speaking_rate is not None:
        ids.append(vocab.rate_token(speaking_rate))
    for name in vocab.config.quality_edges:  # fixed feature order
        value = (quality or {}).get(name)
        if value is not None and value == value:  # skip NaN
            ids.append(vocab.quality_token(name, float(value)))
    if background is not None:
        ids.append(vocab.background_token(background))
    if quality_mode:
        ids.append(vocab.quality_mode_id)
    return ids


def build_prompt(
    text: str | Sequence[int],
    controls: Sequence[int] = (),
    vocab: Vocab = DEFAULT_VOCAB,
    n_codebooks: int = N_CODEBOOKS,
) -> torch.Tensor:
    """Speaker row, control rows and text rows: ``[P, n_codebooks + 1]`` int64."""
    text_ids = vocab.encode_text(text) if isinstance(text, str) else list(text)
    for t in [*controls, *text_ids]:
        if not 0 <= t < vocab.size:
            raise ValueError(f"token id {t} outside the text vocabulary [0, {vocab.size})")
    rows = 1 + len(controls) + len(text_ids)
    ids_PC = torch.full((rows, n_codebooks + 1), AUDIO_PAD_ID, dtype=torch.long)
    ids_PC[0, n_codebooks] = vocab.text_pad_id
    ids_PC[1:, n_codebooks] = torch.tensor([*controls, *text_ids], dtype=torch.long)
    return ids_PC


def build_sequence(
    codes_KT: torch.Tensor,
    text: str | Sequence[int],
    controls: Sequence[int] = (),
    vocab: Vocab = DEFAULT_VOCAB,
) -> ClipSequence:
    """The full teacher-forcing sequence of one clip from undelayed codes ``[K, T]``."""
    codes_KT = torch.as_tensor(codes_KT).long()
    K, n_frames = codes_KT.shape
    if n_frames == 0:
        raise ValueError("a clip needs at least one codec frame")
    if int(codes_KT.min()) < 0 or int(codes_KT.max()) >= CODEBOOK_SIZE:
        raise ValueError(f"codes must lie in [0, {CODEBOOK_SIZE})")
    prompt_PC = build_prompt(text, controls, vocab, K)
    audio_SK = apply_delay(codes_KT).T  # [T + K, K]
    audio_SC = torch.cat([audio_SK, torch.full((audio_SK.shape[0], 1), vocab.text_pad_id)], dim=1)
    ids_TC = torch.cat([prompt_PC, audio_SC], dim=0)
    target_TK = ids_TC[1:, :K]
    loss_mask_TK = torch.zeros(ids_TC.shape[0], K, dtype=torch.bool)
    loss_mask_TK[:-1] = target_TK != AUDIO_PAD_ID
    loss_mask_TK[: prompt_PC.shape[0] - 1] = False  # targets inside the prompt are text, not audio
    return ClipSequence(ids_TC, loss_mask_TK, prompt_PC.shape[0], n_frames)


@dataclass
class PackedBatch:
    ids_BTC: torch.Tensor
    doc_ids_BT: torch.Tensor  # -1 on padding rows
    loss_mask_BTK: torch.Tensor
    speaker_pos_N2: torch.Tensor  # (batch row, time) of each packed clip's row 0
    seq_index_N: torch.Tensor  # which input sequence each speaker position belongs to


def pack(
    sequences: Sequence[ClipSequence], max_len: int, text_pad_id: int = DEFAULT_VOCAB.text_pad_id
) -> PackedBatch:
    """Greedy first-fit packing of whole clips into rows of ``max_len`` (clips are never split)."""
    rows: list[list[int]] = []
    fill: list[int] = []
    for i, s in enumerate(sequences):
        n = s.ids_TC.shape[0]
        if n > max_len:
            raise ValueError(f"sequence {i} has {n} rows > max_len {max_len}")
        for r, used in enumerate(fill):
            if used + n <= max_len:
                rows[r].append(i)
                fill[r] += n
                break
        else:
            rows.append([i])
            fill.append(n)
    K = sequences[0].loss_mask_TK.shape[1] if sequences else N_CODEBOOKS
    B = len(rows)
    ids = torch.full((B, max_len, K + 1), AUDIO_PAD_ID, dtype=torch.long)
    ids[..., K] = text_pad_id
    docs = torch.full((B, max_len), -1, dtype=torch.long)
    mask = torch.zeros(B, max_len, K, dtype=torch.bool)
    spk, order = [], []
    for b, members in enumerate(rows):
        t = 0
        for i in members:
            s = sequences[i]
            n = s.ids_TC.shape[0]
            ids[b, t : t + n] = s.ids_TC
            docs[b, t : t + n] = i
            mask[b, t : t + n] = s.loss_mask_TK
            spk.append((b, t))
            order.append(i)
            t += n
    return PackedBatch(ids, docs, mask, torch.tensor(spk, dtype=torch.long).view(-1, 2), torch.tensor(order))


def audio_loss(
    logits_BTKV: torch.Tensor, ids_BTC: torch.Tensor, loss_mask_BTK: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean next-row cross entropy over masked (row, codebook) entries, and top-1 accuracy."""
    K = logits_BTKV.shape[2]
    logits = logits_BTKV[:, :-1].float()
    target = ids_BTC[:, 1:, :K]
    mask = loss_mask_BTK[:, :-1]
    ce = F.cross_entropy(logits.flatten(0, 2), target.flatten(), reduction="none").view_as(target)
    n = mask.sum().clamp(min=1)
    loss = (ce * mask).sum() / n
    with torch.no_grad():
        acc = ((logits.argmax(-1) == target) & mask).sum().float() / n
    return loss, acc


__all__ = [
    "AUDIO_PAD_ID",
    "EOA_ID",
    "ClipSequence",
    "PackedBatch",
    "audio_loss",
    "build_prompt",
    "build_sequence",
    "control_tokens",
    "pack",
]
