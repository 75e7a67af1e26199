"""One shard sample -> one training :class:`~accord.train.data.Example` under a stage's conditioning.

The prompt layout is the release's (``accord.model.sequence.prompt_head``): pretrain and
midtrain clips are text + silence only; a clip with a speaker embedding (anneal stages) gets
the speaker slot and its markers. Every random choice (which ASR transcript, whether
rate/quality tokens are dropped, whether the prompt embedding comes from an augmented copy)
is drawn from a generator keyed on ``(seed, epoch, clip_id, purpose)``: a new draw each
epoch, identical on every rank and after a resume, independent of batch order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from accord.core.shards import ShardSample
from accord.core.vocab import DEFAULT_VOCAB, Vocab
from accord.model.sequence import PromptControls, build_sequence
from accord.train.data import Example, rng_for
from accord.train.recipe import ConditioningConfig


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def pick_transcript(meta: dict[str, Any], rng: np.random.Generator) -> str | None:
    """One of the clip's ASR transcripts, uniformly: its spoken form (``text_normalized``, what the
    release serves; older shards lack it), else the written text, else the ASR-normalised one."""
    texts = []
    for t in meta.get("transcripts") or []:
        text = (t.get("text_normalized") or t.get("text") or t.get("normalized") or "").strip()
        if text:
            texts.append(text)
    if not texts:
        return None
    return texts[int(rng.integers(len(texts)))]


def is_top_quality(meta: dict[str, Any], cond: ConditioningConfig) -> bool:
    agr = _finite(meta.get("agreement"))
    snr = _finite(meta.get("snr_db"))
    return (
        agr is not None
        and agr >= cond.quality_mode_min_agreement
        and snr is not None
        and snr >= cond.quality_mode_min_snr_db
    )


@dataclass
class ExampleBuilder:
    """Callable for :class:`~accord.train.data.StageLoader`: ``(sample, epoch) -> Example | None``."""

    cond: ConditioningConfig
    seed: int = 1234
    vocab: Vocab = DEFAULT_VOCAB

    def controls(
        self, meta: dict[str, Any], rng: np.random.Generator, speaker: bool, background: str
    ) -> PromptControls:
        """One clip's conditioning, laid out by :func:`~accord.model.sequence.prompt_head` as the
        release serves it: the speaker slot, background and accurate markers only with a speaker
        embedding (anneal stages), rate and quality rows each kept with ``1 - drop_p``."""
        c = self.cond
        rate = None
        if c.rate and rng.random() >= c.rate_drop_p:
            rate = _finite(meta.get("speaking_rate"))
            rate = rate if rate is not None and rate > 0 else None  # ZONOS2's rate buckets need rate > 0
        quality = None
        if c.quality and rng.random() >= c.quality_drop_p:
            quality = self.vocab.quality_values(meta)
        accurate = c.quality_mode and is_top_quality(meta, c)
        return PromptControls(
            speaker=speaker, background=background, accurate=accurate, speaking_rate=rate, quality=quality
        )

    def speaker(self, sample: ShardSample, rng: np.random.Generator) -> tuple[np.ndarray | None, bool]:
        """The prompt embedding and whether it comes from an augmented (degraded) copy."""
        c = self.cond
        if c.speaker == "none":
            return None, False
        if c.speaker == "full":
            return sample.spk, False
        if c.speaker != "crop":
            raise ValueError(f"unknown speaker source {c.speaker!r}; expected none, crop or full")
        aug = sample.spkaug
        has_aug = aug is not None and aug.ndim == 2 and len(aug) > 0
        if c.aug_prompt_prob > 0 and has_aug and rng.random() < c.aug_prompt_prob:
            return aug[int(rng.integers(len(aug)))], True
        crop = sample.spkcrop
        return (crop if crop is not None else sample.spk), False

    def __call__(self, sample: ShardSample, epoch: int) -> Example | None:
        meta = sample.meta
        clip_id = sample.clip_id
        rng = rng_for(self.seed, "example", epoch, clip_id)
        text = pick_transcript(meta, rng)
        if text is None:
            return None
        spk, augmented = self.speaker(sample, rng)
        # the background marker describes the speaker prompt: a degraded copy is noisy
        background = "noisy" if augmented else self.vocab.background_marker(meta)
        controls = self.controls(meta, rng, spk is not None, background)
        codes_KT = torch.from_numpy(np.asarray(sample.codes).astype(np.int64))
        seq = build_sequence(codes_KT, text, controls, self.vocab)
        mask_TK = seq.loss_mask_TK.clone()
        if self.cond.mask_crop and meta.get("speaker_crop"):
            f0, f1 = (int(v) for v in meta["speaker_crop"])
            mask_crop_frames(mask_TK, seq.audio_start, f0, f1)
        speaker = None if spk is None else torch.as_tensor(np.asarray(spk, dtype=np.float32))
        return Example(clip_id=clip_id, ids_TC=seq.ids_TC, mask_TK=mask_TK, speaker_S=speaker)


def mask_crop_frames(mask_TK: torch.Tensor, audio_start: int, f0: int, f1: int) -> None:
    """No loss on codec frames [f0, f1) the prompt embedding was computed from.

    Under the delay pattern codebook ``j``'s frame ``f`` sits at row ``audio_start + f + j``
    and is predicted by the logit one row earlier.
    """
    T, K = mask_TK.shape
    for j in range(K):
        lo = max(0, audio_start + f0 + j - 1)
        hi = min(T, audio_start + f1 + j - 1)
        if hi > lo:
            mask_TK[lo:hi, j] = False
