"""Text (+ optional reference voice) -> waveform with a ZONOS2-layout checkpoint.

The prompt comes from ``accord.model.sequence`` (the same rows the trainer uses), the speaker
vector from ``accord.tokenize.speaker.SpeakerEncoder`` (the model applies its own LDA), codes
from ``accord.model.generate`` and audio from ``accord.tokenize.codec.DacCodec``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from accord.core.shards import RANDOM_WEIGHTS_KEY
from accord.core.vocab import CODEC_SAMPLE_RATE, Vocab, VocabConfig
from accord.model.checkpoint import load_zonos2, read_extra
from accord.model.generate import SamplingConfig, generate
from accord.model.sequence import build_prompt, control_tokens

log = logging.getLogger(__name__)

DEFAULT_CODEC = "dac:44khz"
DEFAULT_SPEAKER = "ecapa:auralis"


@dataclass
class SynthRequest:
    text: str
    speaker_wav: str | None = None
    speaking_rate: float | None = None  # UTF-8 bytes per second
    background: str | None = None  # speaker-prompt background: "clean" | "noisy" ("noise"/"music" = noisy)
    quality_mode: bool = False
    sampling: SamplingConfig = field(default_factory=SamplingConfig)


@dataclass
class SynthResult:
    wav: np.ndarray  # float32 mono
    sample_rate: int
    codes_KT: torch.Tensor
    ended: bool
    info: dict[str, Any]


def vocab_from_extra(extra: dict[str, Any]) -> Vocab:
    """The vocabulary the checkpoint was trained with (``extra["vocab"]``, VocabConfig.to_dict form)."""
    v = extra.get("vocab")
    return Vocab(VocabConfig.from_dict(v)) if v else Vocab()


def recorded_ref(ref: str, random_weights: list[str] | None) -> str:
    """The reference that reproduces the model that made a checkpoint's training data.

    Seeded random weights only when the record says the data was made with them: a
    ``<kind>:random`` ref (what tokenize records), or ``ref`` listed in ``random_weights``
    (written when the flag, not the ref, carried it). Otherwise ``ref`` itself, whose loader
    takes trained weights or fails closed with how to install them.
    """
    from accord.weights import NAMED

    named = NAMED.get(ref)
    if random_weights and ref in random_weights and named is not None and named.random_ref:
        return named.random_ref
    return ref


def speaker_embedding(wav_path: str | os.PathLike, ref: str) -> torch.Tensor:
    """Raw (pre-LDA) speaker embedding [D_spk] of a reference recording."""
    import soundfile as sf
    import torchaudio.functional as AF

    from accord.tokenize.speaker import SAMPLE_RATE, SpeakerEncoder

    try:
        wav, sr = sf.read(str(wav_path), dtype="float32", always_2d=True)
    except Exception as e:
        raise ValueError(f"cannot read speaker reference {wav_path}: {e}") from e
    if wav.size == 0:
        raise ValueError(f"speaker reference {wav_path} is empty")
    x = torch.from_numpy(wav.mean(axis=1))
    if sr != SAMPLE_RATE:
        x = AF.resample(x, sr, SAMPLE_RATE)
    return SpeakerEncoder.load(ref).embed(x[None])[0]


def decode_codes(codes_KT: torch.Tensor, codec_ref: str) -> tuple[np.ndarray, int]:
    """The one place codes become audio (``codec_ref`` from :func:`recorded_ref`)."""
    from accord.tokenize.codec import DacCodec

    codec = DacCodec.load(codec_ref)
    if codes_KT.shape[1] == 0:
        return np.zeros(0, np.float32), codec.sample_rate
    wav = codec.decode(codes_KT[None].long())[0]
    return wav.numpy().astype(np.float32), codec.sample_rate


def synthesize(checkpoint: str | os.PathLike, req: SynthRequest, decode: bool = True) -> SynthResult:
    torch.manual_seed(req.sampling.seed or 0)
    model = load_zonos2(checkpoint)
    extra = read_extra(checkpoint)
    vocab = vocab_from_extra(extra)
    wants_controls = req.speaking_rate is not None or req.background is not None or req.quality_mode
    if vocab.size != model.cfg.text_vocab:
        if "vocab" in extra or wants_controls:
            raise ValueError(
                f"{checkpoint}: vocabulary has {vocab.size} ids, the model's text_vocab is "
                f"{model.cfg.text_vocab}; control tokens need the vocabulary the model was trained with"
            )
        # A foreign (e.g. released ZONOS2) checkpoint: byte ids agree, its control tail is unknown,
        # so the prompt is plain text with the model's own padding id.
        log.warning("%s: no accord vocabulary; prompting with plain text (no control tokens)", checkpoint)
        vocab = Vocab(vocab.config)
        vocab.size = model.cfg.text_vocab
    controls = control_tokens(
        vocab, speaking_rate=req.speaking_rate, background=req.background, quality_mode=req.quality_mode
    )
    prompt = build_prompt(req.text, controls, vocab, model.cfg.n_codebooks)
    spk = None
    recorded = extra.get(RANDOM_WEIGHTS_KEY)
    if req.speaker_wav:
        speaker_ref = recorded_ref(extra.get("speaker_ref", DEFAULT_SPEAKER), recorded)
        spk = speaker_embedding(req.speaker_wav, speaker_ref)
        if spk.numel() != model.cfg.speaker_embedding_dim:
            raise ValueError(
                f"speaker encoder gives {spk.numel()}-d embeddings, the model expects "
                f"{model.cfg.speaker_embedding_dim}; set speaker_ref in the checkpoint's accord extra"
            )
    result = generate(model, prompt, spk, req.sampling)
    codec_ref = recorded_ref(extra.get("codec") or DEFAULT_CODEC, recorded)
    info = {
        "checkpoint": str(Path(checkpoint)),
        "codec": codec_ref,
        "frames": int(result.codes_KT.shape[1]),
        "steps": result.steps,
        "ended_with_eoa": result.ended,
        "prompt_rows": int(prompt.shape[0]),
    }
    if not decode:
        return SynthResult(np.zeros(0, np.float32), CODEC_SAMPLE_RATE, result.codes_KT, result.ended, info)
    wav, sr = decode_codes(result.codes_KT, codec_ref)
    return SynthResult(wav, sr, result.codes_KT, result.ended, info)
