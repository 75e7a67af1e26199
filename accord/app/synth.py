"""Text (+ optional reference voice) -> waveform with a ZONOS2-layout checkpoint.

The prompt comes from ``accord.model.sequence`` (the same rows the trainer uses), the speaker
vector from ``accord.tokenize.speaker.SpeakerEncoder`` (the model applies its own LDA), codes
from ``accord.model.generate`` and audio from ``accord.tokenize.codec.DacCodec``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from accord.core.shards import RANDOM_WEIGHTS_KEY
from accord.core.vocab import CODEC_SAMPLE_RATE, INFERENCE_BACKGROUND, Vocab, VocabConfig
from accord.model.checkpoint import load_zonos2, read_extra, read_params
from accord.model.generate import SamplingConfig, generate
from accord.model.sampling import audio_codes
from accord.model.sequence import PromptControls, build_prompt
from accord.tokenize.codec import DEFAULT_REF

log = logging.getLogger(__name__)


def default_refs(speaker_embedding_dim: int) -> dict[str, str]:
    """The codec and speaker encoder for a checkpoint that records none: tokenize's defaults (their
    one owner: ``accord.tokenize.codec`` / ``accord.tokenize.speaker``), the encoder chosen by the
    width of the model's speaker path. A trained checkpoint records what its shards were tokenized
    with (``codec``, ``speaker_ref``) and that wins."""
    from accord.tokenize.speaker import speaker_ref_for

    return {"codec": DEFAULT_REF, "speaker": speaker_ref_for(speaker_embedding_dim)}


@dataclass
class SynthRequest:
    text: str
    speaker_wav: str | None = None
    speaking_rate: float | None = None  # UTF-8 bytes per second
    # speaker-prompt background: "clean" | "noisy"; None = ZONOS2's default (noisy). Like the
    # accurate marker it is sent only with a speaker (the release's prefill)
    background: str | None = None
    # the accurate-mode marker; off = expressive mode. On by default, as the release's requests
    # (``server/api_server.py`` l.1202)
    accurate: bool = True
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    # quality feature values by the vocabulary's feature names ("lufs", "estimated_snr", ...);
    # None = the vocabulary's default buckets (ZONOS2: trailing_silence_s bucket 3), {} = none;
    # non-finite values are left out, as the release does
    quality: dict[str, float] | None = None
    # written -> spoken text before tokenizing, as the release's requests (``text_normalization``,
    # on by default) and as tokenize normalized the training text (accord.tokenize.textnorm)
    text_normalization: bool = True
    language: str = "en"  # the grammars normalization uses; one without grammars passes through


@dataclass
class SynthResult:
    wav: np.ndarray  # float32 mono
    sample_rate: int
    codes_KT: torch.Tensor
    ended: bool
    info: dict[str, Any]


def request_controls(req: SynthRequest, vocab: Vocab) -> PromptControls:
    """A request's conditioning with the release's defaults (noisy background, accurate on,
    default quality buckets); the speaker rows come with a reference voice only."""
    defaults = req.quality is None
    return PromptControls(
        speaker=bool(req.speaker_wav),
        background=req.background or INFERENCE_BACKGROUND,
        accurate=req.accurate,
        speaking_rate=req.speaking_rate,
        quality=None if defaults else req.quality,
        quality_buckets=vocab.config.default_quality_buckets if defaults else None,
    )


def synth_prompt(req: SynthRequest, vocab: Vocab, n_codebooks: int) -> torch.Tensor:
    """The prompt rows of a request: the rows the release builds for it (``accord.model.sequence``)."""
    return build_prompt(req.text, request_controls(req, vocab), vocab, n_codebooks)


def vocab_from_extra(extra: dict[str, Any]) -> Vocab:
    """The vocabulary the checkpoint was trained with (``extra["vocab"]``, VocabConfig.to_dict form)."""
    v = extra.get("vocab")
    return Vocab(VocabConfig.from_dict(v)) if v else Vocab()


def vocab_from_params(params: dict[str, Any]) -> Vocab | None:
    """The control layout a released ZONOS2 ``params.json`` advertises, if it is one accord can
    build (rate + quality buckets, background and accurate markers) and it fills ``text_vocab``."""
    if not (params.get("speaker_background_token_enabled") and params.get("accurate_mode_token_enabled")):
        return None
    keys = ("speaking_rate_buckets", "quality_buckets", "quality_features")
    if not all(k in params for k in keys[:2]):
        return None
    try:
        vocab = Vocab(VocabConfig.from_dict({k: params[k] for k in keys if k in params}))
    except (TypeError, ValueError, AttributeError):
        return None
    return vocab if vocab.size == params.get("text_vocab") else None


def recorded_ref(ref: str, random_weights: list[str] | None) -> str:
    """The reference that reproduces the model that made a checkpoint's training data.

    Seeded random weights only when the record says the data was made with them: a
    ``<kind>:random`` ref (what tokenize records), or ``ref`` listed in ``random_weights``
    (written when the flag, not the ref, carried it). Otherwise ``ref`` itself, whose loader
    takes trained weights or fails closed with how to install them.
    """
    from accord.core.weights import NAMED

    named = NAMED.get(ref)
    if random_weights and ref in random_weights and named is not None and named.random_ref:
        return named.random_ref
    return ref


def speaker_embedding(wav_path: str | os.PathLike, ref: str) -> torch.Tensor:
    """Raw (pre-LDA) speaker embedding [D_spk] of a reference recording."""
    import soundfile as sf
    import torchaudio.functional as AF

    from accord.tokenize.speaker import SpeakerEncoder

    try:
        wav, sr = sf.read(str(wav_path), dtype="float32", always_2d=True)
    except Exception as e:
        raise ValueError(f"cannot read speaker reference {wav_path}: {e}") from e
    if wav.size == 0:
        raise ValueError(f"speaker reference {wav_path} is empty")
    x = torch.from_numpy(wav.mean(axis=1))
    encoder = SpeakerEncoder.load(ref)
    if sr != encoder.sample_rate:  # 16 kHz for ECAPA, 24 kHz for the release's voice embedding
        x = AF.resample(x, sr, encoder.sample_rate)
    return encoder.embed(x[None])[0]


def decode_codes(codes_KT: torch.Tensor, codec_ref: str) -> tuple[np.ndarray, int]:
    """The one place codes become audio (``codec_ref`` from :func:`recorded_ref`)."""
    from accord.tokenize.codec import DacCodec

    codec = DacCodec.load(codec_ref)
    if codes_KT.shape[1] == 0:
        return np.zeros(0, np.float32), codec.sample_rate
    wav = codec.decode(audio_codes(codes_KT, codec.codebook_size)[None].long())[0]
    return wav.numpy().astype(np.float32), codec.sample_rate


def synthesize(checkpoint: str | os.PathLike, req: SynthRequest, decode: bool = True) -> SynthResult:
    torch.manual_seed(req.sampling.seed or 0)
    if req.text_normalization:
        from accord.tokenize.textnorm import normalize

        req = replace(req, text=normalize(req.text, req.language))
    model = load_zonos2(checkpoint)
    extra = read_extra(checkpoint)
    released = None if "vocab" in extra else vocab_from_params(read_params(checkpoint))
    vocab = released or vocab_from_extra(extra)
    # the accurate marker is a default, not asked for: it alone does not need accord's vocabulary
    wants_controls = req.speaking_rate is not None or req.background is not None or bool(req.quality)
    if vocab.size != model.cfg.text_vocab:
        if "vocab" in extra or wants_controls:
            raise ValueError(
                f"{checkpoint}: vocabulary has {vocab.size} ids, the model's text_vocab is "
                f"{model.cfg.text_vocab}; control tokens need the vocabulary the model was trained with"
            )
        # A foreign (e.g. released ZONOS2) checkpoint: byte ids agree, its control tail is unknown,
        # so the prompt is plain text (+ ZONOS2's silence rows, the speaker slot with a voice but
        # no markers) with the model's own padding id.
        log.warning("%s: no accord vocabulary; prompting with plain text (no control tokens)", checkpoint)
        vocab = Vocab(vocab.config)
        vocab.size = model.cfg.text_vocab
        bare = PromptControls(speaker=bool(req.speaker_wav), background=None)
        prompt = build_prompt(req.text, bare, vocab, model.cfg.n_codebooks)
    else:
        prompt = synth_prompt(req, vocab, model.cfg.n_codebooks)
    spk = None
    recorded = extra.get(RANDOM_WEIGHTS_KEY)
    if req.speaker_wav:
        fallback = default_refs(model.cfg.speaker_embedding_dim)["speaker"]
        speaker_ref = recorded_ref(extra.get("speaker_ref") or fallback, recorded)
        spk = speaker_embedding(req.speaker_wav, speaker_ref)
        if spk.numel() != model.cfg.speaker_embedding_dim:
            raise ValueError(
                f"speaker encoder gives {spk.numel()}-d embeddings, the model expects "
                f"{model.cfg.speaker_embedding_dim}; set speaker_ref in the checkpoint's accord extra"
            )
    result = generate(model, prompt, spk, req.sampling)
    codec_ref = recorded_ref(extra.get("codec") or DEFAULT_REF, recorded)
    info = {
        "checkpoint": str(Path(checkpoint)),
        "codec": codec_ref,
        "frames": int(result.codes_KT.shape[1]),
        "steps": result.steps,
        "ended_with_eoa": result.ended,
        "prompt_rows": int(prompt.shape[0]),
        "text": req.text,
    }
    if not decode:
        return SynthResult(np.zeros(0, np.float32), CODEC_SAMPLE_RATE, result.codes_KT, result.ended, info)
    wav, sr = decode_codes(result.codes_KT, codec_ref)
    return SynthResult(wav, sr, result.codes_KT, result.ended, info)
