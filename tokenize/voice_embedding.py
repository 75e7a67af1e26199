"""The 2048-d voice embedding the released ZONOS2 conditions on, and a loader for its weights.

ZONOS2 (``zonos2/models/speaker_cloning.py``) embeds a reference voice with the Qwen3-TTS
speaker encoder, released on its own as ``marksverdhei/Qwen3-Voice-Embedding-12Hz-1.7B``: an
ECAPA-TDNN (Desplanques et al., 2020) of about 6M parameters on a 24 kHz log-mel spectrogram.
Its 2048-d output feeds the checkpoint's ``speaker_lda_projection`` (2048 -> 1024) and
``speaker_projection`` (1024 -> D). This module is our implementation of that network and its
feature front end; parameter names equal the released state dict's (``blocks.0.conv.weight``,
``blocks.1.res2net_block.blocks.0.conv.weight``, ``mfa.conv``, ``asp.tdnn.conv``, ``asp.conv``,
``fc``), so the released file loads as it is.

Differences from speechbrain's ECAPA (``ecapa:*``, 192-d) that change the numbers, hence the
separate implementation: every convolution pads "same" by reflection, there is no BatchNorm
and no input normalisation, the pooling has no length mask, and the final projection has
2048 outputs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from accord.core.weights import random_model_dir

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
# One wrapper level the loader strips: ``speaker_encoder.`` is how a full Qwen3-TTS checkpoint
# nests this encoder; the others are common Hugging Face wrapper names.
KNOWN_PREFIXES = ("speaker_encoder.", "model.", "encoder.")


@dataclass(frozen=True)
class VoiceEmbeddingConfig:
    """The released encoder's shape and front end (the HF ``config.json`` values)."""

    sample_rate: int = 24_000
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 256
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float = 12_000.0
    log_floor: float = 1e-5  # log(clamp(mel, floor))
    channels: tuple[int, ...] = (512, 512, 512, 512, 1536)  # first TDNN, SE-Res2Net blocks, MFA
    kernel_sizes: tuple[int, ...] = (5, 3, 3, 3, 1)
    dilations: tuple[int, ...] = (1, 2, 3, 4, 1)
    attention_channels: int = 128
    res2net_scale: int = 8
    se_channels: int = 128
    embed_dim: int = 2048

    def __post_init__(self) -> None:
        if not len(self.channels) == len(self.kernel_sizes) == len(self.dilations) >= 3:
            raise ValueError("channels, kernel_sizes and dilations need one entry per layer (>= 3)")


class LogMel(nn.Module):
    """Waveform ``[B, T]`` -> log-mel ``[B, n_mels, frames]`` as the release computes it.

    Reflect-pad by ``(n_fft - hop) / 2`` each side, uncentred STFT with a periodic Hann window,
    magnitude (power 1), Slaney-normalised Slaney-scale filterbank, natural log of the
    magnitude clamped at ``log_floor``. Buffers are not persistent: the weights file holds none.
    """

    def __init__(self, cfg: VoiceEmbeddingConfig) -> None:
        super().__init__()
        import torchaudio.functional as AF

        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.win_length), persistent=False)
        fb_FM = AF.melscale_fbanks(
            n_freqs=cfg.n_fft // 2 + 1,
            f_min=cfg.f_min,
            f_max=cfg.f_max,
            n_mels=cfg.n_mels,
            sample_rate=cfg.sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        self.register_buffer("fb_FM", fb_FM, persistent=False)

    def n_frames(self, n_samples: int) -> int:
        """Frames of an ``n_samples`` waveform: the padding adds ``n_fft - hop`` samples."""
        return 1 + (n_samples - self.cfg.hop_length) // self.cfg.hop_length

    def forward(self, wav_BT: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        pad = (cfg.n_fft - cfg.hop_length) // 2
        if wav_BT.shape[-1] <= pad:
            raise ValueError(f"waveform of {wav_BT.shape[-1]} samples is too short for the voice embedding")
        x_BT = F.pad(wav_BT[:, None], (pad, pad), mode="reflect")[:, 0]
        spec_BFN = torch.stft(
            x_BT,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            win_length=cfg.win_length,
            window=self.window,
            center=False,
            return_complex=True,
        ).abs()
        mel_BMN = torch.einsum("bfn,fm->bmn", spec_BFN, self.fb_FM)
        return mel_BMN.clamp(min=cfg.log_floor).log()


class TDNNBlock(nn.Module):
    """Dilated Conv1d, "same" length by reflection padding, then ReLU (no BatchNorm)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(
            c_in, c_out, kernel_size, dilation=dilation, padding="same", padding_mode="reflect"
        )

    def forward(self, x_BCT: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x_BCT))


class Res2NetBlock(nn.Module):
    """Split channels into ``scale`` groups; group i > 0 goes through a TDNN after adding the
    previous group's output, widening the receptive field inside one block."""

    def __init__(self, channels: int, scale: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        if channels % scale:
            raise ValueError(f"{channels} channels do not split into {scale} Res2Net groups")
        width = channels // scale
        self.scale = scale
        self.blocks = nn.ModuleList(TDNNBlock(width, width, kernel_size, dilation) for _ in range(scale - 1))

    def forward(self, x_BCT: torch.Tensor) -> torch.Tensor:
        groups = x_BCT.chunk(self.scale, dim=1)
        outs = [groups[0]]
        prev = None
        for group, block in zip(groups[1:], self.blocks, strict=True):
            prev = block(group if prev is None else group + prev)
            outs.append(prev)
        return torch.cat(outs, dim=1)


class SEBlock(nn.Module):
    """Squeeze-and-excitation: a per-channel sigmoid gate from the time-averaged features."""

    def __init__(self, channels: int, se_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(channels, se_channels, 1)
        self.conv2 = nn.Conv1d(se_channels, channels, 1)

    def forward(self, x_BCT: torch.Tensor) -> torch.Tensor:
        s_BC1 = x_BCT.mean(dim=2, keepdim=True)
        return x_BCT * torch.sigmoid(self.conv2(F.relu(self.conv1(s_BC1))))


class SERes2NetBlock(nn.Module):
    """TDNN(1x1) -> Res2Net -> TDNN(1x1) -> SE, plus the residual."""

    def __init__(
        self, c_in: int, c_out: int, cfg: VoiceEmbeddingConfig, kernel_size: int, dilation: int
    ) -> None:
        super().__init__()
        if c_in != c_out:
            raise ValueError(f"SE-Res2Net residual needs equal widths, got {c_in} -> {c_out}")
        self.tdnn1 = TDNNBlock(c_in, c_out, 1, 1)
        self.res2net_block = Res2NetBlock(c_out, cfg.res2net_scale, kernel_size, dilation)
        self.tdnn2 = TDNNBlock(c_out, c_out, 1, 1)
        self.se_block = SEBlock(c_out, cfg.se_channels)

    def forward(self, x_BCT: torch.Tensor) -> torch.Tensor:
        h_BCT = self.se_block(self.tdnn2(self.res2net_block(self.tdnn1(x_BCT))))
        return h_BCT + x_BCT


class AttentiveStatsPool(nn.Module):
    """Channel-wise attentive mean and std over time, the attention conditioned on the global
    mean and std: ``[B, C, T] -> [B, 2C, 1]``. All frames count (the release pools unmasked)."""

    EPS = 1e-12  # variance floor before the square root

    def __init__(self, channels: int, attention_channels: int) -> None:
        super().__init__()
        self.tdnn = TDNNBlock(3 * channels, attention_channels, 1, 1)
        self.conv = nn.Conv1d(attention_channels, channels, 1)

    @classmethod
    def stats(cls, x_BCT: torch.Tensor, w_BCT: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean_BC = (w_BCT * x_BCT).sum(dim=2)
        var_BC = (w_BCT * (x_BCT - mean_BC[..., None]).pow(2)).sum(dim=2)
        return mean_BC, var_BC.clamp(min=cls.EPS).sqrt()

    def forward(self, x_BCT: torch.Tensor) -> torch.Tensor:
        T = x_BCT.shape[-1]
        mean_BC, std_BC = self.stats(x_BCT, torch.full_like(x_BCT, 1.0 / T))
        ctx_B3CT = torch.cat(
            [x_BCT, mean_BC[..., None].expand_as(x_BCT), std_BC[..., None].expand_as(x_BCT)], dim=1
        )
        attn_BCT = torch.softmax(self.conv(torch.tanh(self.tdnn(ctx_B3CT))), dim=2)
        mean_BC, std_BC = self.stats(x_BCT, attn_BCT)
        return torch.cat([mean_BC, std_BC], dim=1)[..., None]


class VoiceEmbedding(nn.Module):
    """Waveform ``[B, T]`` at 24 kHz -> voice embedding ``[B, embed_dim]``.

    ``state_dict()`` holds exactly the released file's tensors (the front end has none).
    """

    def __init__(self, cfg: VoiceEmbeddingConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or VoiceEmbeddingConfig()
        self.cfg = cfg
        self.front_end = LogMel(cfg)
        ch, ks, dil = cfg.channels, cfg.kernel_sizes, cfg.dilations
        self.blocks = nn.ModuleList([TDNNBlock(cfg.n_mels, ch[0], ks[0], dil[0])])
        self.blocks.extend(
            SERes2NetBlock(ch[i - 1], ch[i], cfg, ks[i], dil[i]) for i in range(1, len(ch) - 1)
        )
        # Multi-layer feature aggregation: the SE-Res2Net outputs, concatenated.
        self.mfa = TDNNBlock(sum(ch[1:-1]), ch[-1], ks[-1], dil[-1])
        self.asp = AttentiveStatsPool(ch[-1], cfg.attention_channels)
        self.fc = nn.Conv1d(2 * ch[-1], cfg.embed_dim, 1)

    def embed_mel(self, mel_BMN: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[B, n_mels, frames]`` -> ``[B, embed_dim]``."""
        h_BCT = self.blocks[0](mel_BMN)
        feats = []
        for block in self.blocks[1:]:
            h_BCT = block(h_BCT)
            feats.append(h_BCT)
        h_BCT = self.mfa(torch.cat(feats, dim=1))
        return self.fc(self.asp(h_BCT))[..., 0]

    def forward(self, wav_BT: torch.Tensor) -> torch.Tensor:
        return self.embed_mel(self.front_end(wav_BT))


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: not a state dict of tensors")
    return obj


def find_weights_file(path: Path) -> Path:
    """The weights file of a model dir (``model.safetensors`` first) or ``path`` itself."""
    if path.is_file():
        return path
    for name in ("model.safetensors", "pytorch_model.bin", "model.pt", "model.pth"):
        if (path / name).is_file():
            return path / name
    found = sorted(p for p in path.glob("*") if p.suffix in WEIGHT_SUFFIXES)
    if len(found) != 1:
        raise FileNotFoundError(
            f"{path}: expected one voice-embedding weights file (model.safetensors or one of "
            f"{', '.join(WEIGHT_SUFFIXES)}), found {[p.name for p in found]}"
        )
    return found[0]


def _describe(keys: set[str], limit: int = 6) -> str:
    listed = sorted(keys)
    more = f" (+{len(listed) - limit} more)" if len(listed) > limit else ""
    return ", ".join(listed[:limit]) + more


def load_voice_embedding(path: str | os.PathLike, cfg: VoiceEmbeddingConfig | None = None) -> VoiceEmbedding:
    """The released encoder from its weights file (or a dir holding it), in eval mode.

    Keys may sit under one wrapper prefix (``speaker_encoder.`` in a full Qwen3-TTS
    checkpoint). Any other mismatch is an error naming the expected and the found keys.
    """
    file = find_weights_file(Path(path))
    state = _read_state_dict(file)
    model = VoiceEmbedding(cfg)
    expected = set(model.state_dict())
    for prefix in KNOWN_PREFIXES:
        if not expected & set(state) and {prefix + k for k in expected} <= set(state):
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            break
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise ValueError(
            f"{file}: not the ZONOS2 voice-embedding weights ({len(expected)} tensors expected, e.g. "
            f"{_describe(expected, 3)}). Missing: {_describe(missing) or 'none'}. "
            f"Unexpected: {_describe(unexpected) or 'none'}."
        )
    own = model.state_dict()
    bad = {k: (tuple(v.shape), tuple(own[k].shape)) for k, v in state.items() if v.shape != own[k].shape}
    if bad:
        shown = "; ".join(f"{k}: found {f}, expected {e}" for k, (f, e) in sorted(bad.items())[:6])
        raise ValueError(f"{file}: voice-embedding tensors of the wrong shape: {shown}")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval()


RANDOM_SEED = 20260102


def ensure_random_weights() -> Path:
    """A model dir holding seeded random weights of the architecture, saved as the release saves
    its own so they load through :func:`load_voice_embedding` (built once, in the cache)."""
    from safetensors.torch import save_file

    def write(tmp: Path) -> None:
        model = VoiceEmbedding(VoiceEmbeddingConfig())
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))

    return random_model_dir(f"zonos2-spk-random-seed{RANDOM_SEED}", RANDOM_SEED, write)
