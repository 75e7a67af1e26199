"""Descript Audio Codec (44.1 kHz, 9 codebooks, hop 512): waveforms <-> int16 codes ``[9, T]``.

Weights come from ``accord.weights.resolve`` (``dac:44khz`` or a path to a DAC ``weights.pth``).
No package ships trained DAC weights, so when ``dac:44khz`` does not resolve and
``allow_random`` is set, the real ``dac.DAC()`` architecture is initialised from a fixed seed,
saved once as a weights file in the cache and loaded back through the same ``DAC.load`` path a
trained checkpoint takes — with a loud warning, and ``DacCodec.random_weights`` set so that
``tokenize.json`` records it.
"""

from __future__ import annotations

import logging
import math
import os
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accord.tokenize.batching import length_batches

log = logging.getLogger(__name__)

SAMPLE_RATE = 44100
HOP_LENGTH = 512
FRAME_RATE = SAMPLE_RATE / HOP_LENGTH  # 86.1328125
RANDOM_SEED = 20260101


@dataclass
class CodecConfig:
    """How the codec is found and run."""

    ref: str = "dac:44khz"
    allow_random: bool = True  # only for ``dac:44khz`` when no trained weights are installed
    device: str = "cpu"
    max_batch_seconds: float = 60.0  # padded seconds per forward (memory bound)


def n_frames_for(n_samples: int) -> int:
    """Codec frames kept for ``n_samples`` of 44.1 kHz audio: ``round(seconds × frame rate)``."""
    return max(1, round(n_samples / HOP_LENGTH))


def _random_weights_file() -> Path:
    from accord.weights import cache_dir

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


def resolve_codec_weights(ref: str, allow_random: bool = True) -> tuple[Path, bool]:
    """Weights file for ``ref`` and whether it holds random (untrained) weights."""
    from accord.weights import ModelNotFound, resolve

    try:
        path = resolve(ref)
    except ModelNotFound:
        if ref != "dac:44khz" or not allow_random:
            raise
        path = _ensure_random_weights()
        msg = (
            "DAC: no trained dac:44khz weights are installed; using the real DAC architecture with RANDOM "
            f"weights from {path}. Codes will not reconstruct speech. Provide trained weights at "
            "$ACCORD_MODELS/dac-44khz/weights.pth for real runs."
        )
        warnings.warn(msg, stacklevel=2)
        log.warning("!" * 20 + " " + msg)
        return path, True
    if path.is_dir():
        candidates = sorted(path.glob("*.pth"))
        if not candidates:
            raise FileNotFoundError(f"DAC weights dir {path} holds no *.pth file")
        path = candidates[0]
    return path, False


class DacCodec:
    """A loaded DAC model with batch encode (pad to the longest, trim per item) and decode."""

    def __init__(
        self,
        model: torch.nn.Module,
        random_weights: bool,
        weights_path: Path | None = None,
        max_batch_seconds: float = 60.0,
    ) -> None:
        self.model = model.eval()
        self.max_batch_seconds = max_batch_seconds
        self.random_weights = random_weights
        self.weights_path = weights_path
        self.sample_rate = int(model.sample_rate)
        self.hop_length = int(model.hop_length)
        self.frame_rate = self.sample_rate / self.hop_length
        self.n_codebooks = int(model.n_codebooks)
        self.codebook_size = int(model.codebook_size)

    @classmethod
    def load(cls, ref: str = "dac:44khz", config: CodecConfig | None = None) -> DacCodec:
        cfg = config or CodecConfig(ref=ref)
        import dac

        path, random_weights = resolve_codec_weights(cfg.ref, cfg.allow_random)
        model = dac.DAC.load(str(path), strict=True)
        if model.sample_rate != SAMPLE_RATE:
            raise ValueError(f"{path}: DAC sample rate {model.sample_rate}, accord needs {SAMPLE_RATE}")
        return cls(model.to(cfg.device), random_weights, path, cfg.max_batch_seconds)

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
