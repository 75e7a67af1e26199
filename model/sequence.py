"""One clip's token matrix, shared by the trainer (teacher forcing) and the generator (prompt).

Rows ([T, n_codebooks + 1], audio columns first, text column last), ZONOS2's prompt order
(``tokenizer/server.py`` + ``scheduler._with_speaker_frames`` + ``tts/prompt.py`` ``_text_rows``):
  speaker rows     only when the prompt has a speaker embedding: the speaker slot (audio pad
                   everywhere, text pad; the model replaces its embedding with the projected
                   speaker vector), the speaker-background marker, the accurate marker (if on)
  control rows     audio pad + one control token each: speaking-rate bucket, quality buckets
                   (``accord.core.vocab``), each only when given
  text rows        audio pad + BOS, UTF-8 byte ids, EOS
  silence rows     the first 17 delayed rows of ZONOS2's 0.2 s silence codes
                   (``accord.core.vocab.SILENCE_FRAMES``) + text pad: the end of every prompt
  audio rows       the clip's delayed codes continuing the silence (``apply_delay`` of
                   silence + codes: codebook j shifted by j frames, one EOA after each
                   codebook's last code) + text pad
``audio_start`` is the first row after the prompt; the clip's frame ``f`` of codebook ``j``
sits at row ``audio_start + f + j``.
Loss mask ``[T, K]``: entry (t, j) says "the logit at row t for codebook j is trained on
ids[t + 1, j]" — true exactly where that target is one of the clip's codes, EOA, a
silence code after the prompt (codebook j's first j cells, its lead-in) or a pad after
codebook j's EOA (its tail: K - 1 - j cells). ZONOS2 samples lead-in and tail cells freely at
decode time and feeds them back, so the model must know them. Other pads and the prompt carry
no loss.
"""

from __future__ import annotations

import math
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
    INFERENCE_BACKGROUND,
    N_CODEBOOKS,
    N_SILENCE_FRAMES,
    SILENCE_FRAMES,
    Vocab,
)


@dataclass
class ClipSequence:
    ids_TC: torch.Tensor  # int64
    loss_mask_TK: torch.Tensor  # bool
    audio_start: int  # index of the first row after the prompt (== prompt length, silence included)
    n_frames: int  # codec frames of the clip (0 for a prompt)


@dataclass(frozen=True)
class PromptControls:
    """What one prompt is conditioned on, in the release's request terms; :func:`prompt_head`
    turns it into rows for training, eval and synth alike.

    ``speaker``: the prompt carries a speaker embedding. Only then does the release add the
    speaker slot, the background marker and (``accurate``) the accurate marker; without one,
    ``background`` and ``accurate`` are dropped, as there. ``background=None`` is a model
    without the markers (the release's ``speaker_background_token_enabled`` off, which also
    turns the accurate marker off): the slot alone. ``quality`` maps feature names to
    values (bucketed by the release's label rule), ``quality_buckets`` to bucket indices (its
    request form); give at most one. ``None`` and non-finite values are left out.
    """

    speaker: bool = False
    background: str | None = INFERENCE_BACKGROUND  # "clean" | "noisy" (or a label meaning one)
    accurate: bool = False
    speaking_rate: float | None = None  # UTF-8 bytes per second
    quality: Mapping[str, float | None] | None = None
    quality_buckets: Mapping[str, int | None] | None = None


def prompt_head(controls: PromptControls, vocab: Vocab = DEFAULT_VOCAB) -> list[int]:
    """The text column of the rows before BOS, laid out as the release's serving stack does.

    Zyphra/ZONOS2: ``tts/prompt.py`` ``_text_rows`` (l.391-434) gives the rate row, then one row
    per quality feature in params.json order (a None bucket skipped); ``tokenizer/server.py``
    (l.122-128) and ``scheduler/scheduler.py`` ``_schedule_prefill`` (l.448-450) put the speaker
    slot at row 0 only when the request has a speaker embedding, and ``_with_speaker_frames``
    (l.374-420) follows it with the background marker and, if on, the accurate marker. The
    slot's text id is the text pad (``tts/prompt.py`` ``make_speaker_slot`` l.380-388).
    """
    c = controls
    if c.quality and c.quality_buckets:
        raise ValueError("give quality values or quality bucket indices, not both")
    ids: list[int] = []
    if c.speaker:
        ids.append(vocab.text_pad_id)
        if c.background is not None:
            ids.append(vocab.background_token(c.background))
            if c.accurate:
                ids.append(vocab.accurate_id)
    if c.speaking_rate is not None:
        ids.append(vocab.rate_token(float(c.speaking_rate)))
    values, buckets = c.quality or {}, c.quality_buckets or {}
    unknown = (set(values) | set(buckets)) - set(vocab.quality_offsets)
    if unknown:
        raise KeyError(f"unknown quality features {sorted(unknown)}; known: {list(vocab.quality_offsets)}")
    for name in vocab.quality_offsets:  # the vocabulary's feature order
        value, bucket = values.get(name), buckets.get(name)
        if value is not None and math.isfinite(float(value)):  # api_server.py l.435 drops the rest
            ids.append(vocab.quality_token(name, float(value)))
        elif bucket is not None:
            ids.append(vocab.quality_bucket_token(name, int(bucket)))
    return ids


def silence_codes(n_codebooks: int = N_CODEBOOKS) -> torch.Tensor:
    """ZONOS2's 0.2 s of silence as undelayed codes ``[K, 17]``."""
    if n_codebooks > len(SILENCE_FRAMES[0]):
        raise ValueError(f"silence codes exist for {len(SILENCE_FRAMES[0])} codebooks, not {n_codebooks}")
    return torch.tensor(SILENCE_FRAMES, dtype=torch.long)[:, :n_codebooks].T.contiguous()


def build_prompt(
    text: str | Sequence[int],
    controls: PromptControls | None = None,
    vocab: Vocab = DEFAULT_VOCAB,
    n_codebooks: int = N_CODEBOOKS,
    silence: bool = True,
) -> torch.Tensor:
    """Speaker and control rows (:func:`prompt_head`), text rows and (``silence``) the delayed
    silence rows: ``[P, K + 1]``. No ``controls``: text and silence only, the pre-training layout."""
    text_ids = vocab.encode_text(text) if isinstance(text, str) else list(text)
    for t in text_ids:
        if not 0 <= t < vocab.size:
            raise ValueError(f"token id {t} outside the text vocabulary [0, {vocab.size})")
    column = [*prompt_head(controls or PromptControls(), vocab), *text_ids]
    ids_PC = torch.full((len(column), n_codebooks + 1), AUDIO_PAD_ID, dtype=torch.long)
    ids_PC[:, n_codebooks] = torch.tensor(column, dtype=torch.long)
    if not silence:
        return ids_PC
    # the first 17 delayed rows of silence alone == those of silence + any clip (see build_sequence)
    silence_SK = apply_delay(silence_codes(n_codebooks)).T[:N_SILENCE_FRAMES]
    return torch.cat([ids_PC, _with_text_pad(silence_SK, vocab)], dim=0)


def _with_text_pad(audio_SK: torch.Tensor, vocab: Vocab) -> torch.Tensor:
    return torch.cat([audio_SK, torch.full((audio_SK.shape[0], 1), vocab.text_pad_id)], dim=1)


def build_sequence(
    codes_KT: torch.Tensor,
    text: str | Sequence[int],
    controls: PromptControls | None = None,
    vocab: Vocab = DEFAULT_VOCAB,
) -> ClipSequence:
    """The full teacher-forcing sequence of one clip from undelayed codes ``[K, T]``."""
    codes_KT = torch.as_tensor(codes_KT).long()
    K, n_frames = codes_KT.shape
    if n_frames == 0:
        raise ValueError("a clip needs at least one codec frame")
    if int(codes_KT.min()) < 0 or int(codes_KT.max()) >= CODEBOOK_SIZE:
        raise ValueError(f"codes must lie in [0, {CODEBOOK_SIZE})")
    head_PC = build_prompt(text, controls, vocab, K, silence=False)
    audio_SK = apply_delay(torch.cat([silence_codes(K), codes_KT], dim=1)).T  # [17 + T + K, K]
    ids_TC = torch.cat([head_PC, _with_text_pad(audio_SK, vocab)], dim=0)
    audio_start = head_PC.shape[0] + N_SILENCE_FRAMES
    target_TK = ids_TC[1:, :K]
    loss_mask_TK = torch.zeros(ids_TC.shape[0], K, dtype=torch.bool)
    # codebook j's pads after its EOA (its tail) are trained too: ZONOS2 samples them freely and
    # feeds them back while the higher codebooks finish their last frames (see accord.model.sampling)
    tail_TK = (target_TK == EOA_ID).cumsum(0) > 0
    loss_mask_TK[:-1] = (target_TK != AUDIO_PAD_ID) | tail_TK
    loss_mask_TK[: audio_start - 1] = False  # targets inside the prompt
    # codebook j's last j silence frames fall after the prompt (its lead-in cells): they are
    # trained, as ZONOS2 decodes them freely (see accord.model.sampling)
    return ClipSequence(ids_TC, loss_mask_TK, audio_start, n_frames)


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
    "PromptControls",
    "audio_loss",
    "build_prompt",
    "build_sequence",
    "pack",
    "prompt_head",
    "silence_codes",
]
