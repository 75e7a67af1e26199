"""Descript Audio Codec (44.1 kHz, 9 codebooks, hop 512): waveforms <-> int16 codes ``[9, T]``.

Weights come from :func:`accord.core.weights.choose_weights` (``dac:44khz`` or a path to a DAC
``weights.pth``), which fails closed when no trained weights are installed. No package ships
trained DAC weights, so tests and demos opt in to ``dac:random`` (or ``allow_random``): the real
``dac.DAC()`` architecture initialised from a fixed seed, saved once as a weights file in the
cache and loaded back through the same ``DAC.load`` path a trained checkpoint takes.
``DacCodec.random_weights`` says so, for ``tokenize.json`` and the shard index to record.
"""

from __future__ import annotations

import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from accord.core.vocab import CODEC_FRAME_RATE, CODEC_HOP_LENGTH, CODEC_SAMPLE_RATE
from accord.core.weights import NAMED, cache_dir, choose_weights
from accord.tokenize.batching import length_batches

SAMPLE_RATE = CODEC_SAMPLE_RATE
HOP_LENGTH = CODEC_HOP_LENGTH
FRAME_RATE = CODEC_FRAME_RATE
RANDOM_SEED = 20260101
DEFAULT_REF = "dac:44khz"
RANDOM_REF = NAMED[DEFAULT_REF].random_ref  # the explicit opt-in to seeded random weights


@dataclass
class CodecConfig:
    """How the codec is found and run."""

    ref: str = DEFAULT_REF
    allow_random: bool = False  # absent dac:44khz -> seeded random weights (tests, demos); recorded
    device: str = "cpu"
    max_batch_seconds: float = 60.0  # padded seconds per forward (memory bound)


def n_frames_for(n_samples: int) -> int:
    """Codec frames kept for ``n_samples`` of 44.1 kHz audio: ``round(seconds × frame rate)``."""
    return max(1, round(n_samples / HOP_LENGTH))


def _random_weights_file() -> Path:
    return cache_dir() / "models" / f"dac-44khz-random-seed{RANDOM_SEED}.pth"


def _ensure_random_weights() -> Path:
    """Create (once, atomically) a DAC weights file with seeded random init; return its path."""
    import dac

    path = _random_weights_file()
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng():
        torch.manual_seed(RANDOM_SEED)
        model = dac.DAC()
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        model.save(
            str(tmp), metadata={"accord": {"random_weights": True, "seed": RANDOM_SEED}}, package=False
        )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def resolve_codec_weights(ref: str, allow_random: bool = False) -> tuple[str, Path]:
    """``(effective ref, weights file)`` for ``ref``; the ref is ``dac:random`` for random weights.

    Fails closed (:class:`accord.core.weights.ModelNotFound`, with how to provide the weights and how
    to opt in) unless trained weights resolve or random ones were asked for.
    """
    chosen = choose_weights(ref, allow_random)
    if chosen.random:
        if chosen.ref != RANDOM_REF:
            raise ValueError(f"{ref!r} names random weights of another model; the codec's is {RANDOM_REF!r}")
        return chosen.ref, _ensure_random_weights()
    path = chosen.path
    if path.is_dir():
        candidates = sorted(path.glob("*.pth"))
        if not candidates:
            raise FileNotFoundError(f"DAC weights dir {path} holds no *.pth file")
        path = candidates[0]
    return chosen.ref, path


class DacCodec:
    """A loaded DAC model with batch encode (pad to the longest, trim per item) and decode."""

    def __init__(
        self,
        model: torch.nn.Module,
        ref: str,
        random_weights: bool,
        weights_path: Path | None = None,
        max_batch_seconds: float = 60.0,
    ) -> None:
        self.model = model.eval()
        self.ref = ref  # reproduces these weights (``dac:random`` when random)
        self.max_batch_seconds = max_batch_seconds
        self.random_weights = random_weights
        self.weights_path = weights_path
        self.sample_rate = int(model.sample_rate)
        self.hop_length = int(model.hop_length)
        self.frame_rate = self.sample_rate / self.hop_length
        self.n_codebooks = int(model.n_codebooks)
        self.codebook_size = int(model.codebook_size)

    @classmethod
    def load(cls, ref: str = DEFAULT_REF, config: CodecConfig | None = None) -> DacCodec:
        cfg = config or CodecConfig(ref=ref)
        import dac

        ref, path = resolve_codec_weights(cfg.ref, cfg.allow_random)
        model = dac.DAC.load(str(path), strict=True)
        if model.sample_rate != SAMPLE_RATE:
            raise ValueError(f"{path}: DAC sample rate {model.sample_rate}, accord needs {SAMPLE_RATE}")
        # A path to a file _ensure_random_weights wrote is still random weights: say so.
        marker = (getattr(model, "metadata", None) or {}).get("accord") or {}
        random_weights = ref == RANDOM_REF or bool(marker.get("random_weights"))
        return cls(model.to(cfg.device), ref, random_weights, path, cfg.max_batch_seconds)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def encode(self, wav_BT: torch.Tensor, lengths_B: list[int] | None = None) -> torch.Tensor:
        """Codes ``[B, 9, T]`` (int16) of a padded batch; ``T`` = frames of the longest item."""
        if wav_BT.dim() != 2:
            raise ValueError(f"expected wav [B, T], got {tuple(wav_BT.shape)}")
        x_B1T = wav_BT.to(self.device, torch.float32).unsqueeze(1)
        x_B1T = self.model.preprocess(x_B1T, self.sample_rate)
        _, codes_BKT, *_ = self.model.encode(x_B1T)
        T = n_frames_for(wav_BT.shape[-1] if lengths_B is None else max(lengths_B))
        return codes_BKT[..., :T].to(torch.int16).cpu()

    def encode_batch(self, wavs: list[np.ndarray]) -> list[np.ndarray]:
        """Encode variable-length 44.1 kHz mono waveforms; each item's codes ``[9, round(s × 86.13)]``.

        Items are sorted by length and grouped so that a forward pads at most
        ``max_batch_seconds`` of audio; padding is zeros at the end, trimmed off per item.
        """
        out: list[np.ndarray] = [np.zeros((self.n_codebooks, 0), np.int16)] * len(wavs)
        for idx, wav_BT, _ in length_batches(wavs, int(self.max_batch_seconds * self.sample_rate)):
            codes_BKT = self.encode(wav_BT)
            for b, i in enumerate(idx):
                out[i] = codes_BKT[b, :, : n_frames_for(len(wavs[i]))].numpy()
        return out

    @torch.inference_mode()
    def decode(self, codes_BKT: torch.Tensor) -> torch.Tensor:
        """Waveform ``[B, T × hop]`` at 44.1 kHz from codes ``[B, 9, T]``."""
        if codes_BKT.dim() != 3 or codes_BKT.shape[1] != self.n_codebooks:
            raise ValueError(f"expected codes [B, {self.n_codebooks}, T], got {tuple(codes_BKT.shape)}")
        codes = codes_BKT.to(self.device, torch.long)
        if int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size:
            raise ValueError(
                f"codes must lie in [0, {self.codebook_size}); special ids (eoa/pad) must be removed"
            )
        z_BDT, *_ = self.model.quantizer.from_codes(codes)
        wav_B1T = self.model.decode(z_BDT)
        return wav_B1T[:, 0, : codes.shape[-1] * self.hop_length].float().cpu()


def expected_frames(seconds: float) -> int:
    """``round(seconds × 86.13)``: the frame count the shard contract promises."""
    return max(1, math.floor(seconds * FRAME_RATE + 0.5))
