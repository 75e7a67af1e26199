"""Model configuration: one dataclass per component, named flavours, parameter counts.

Field names follow ZONOS2's ``params.json`` (``dim``, ``n_layers``, ``moe_*`` ...) so a
checkpoint's config maps onto ``ModelConfig`` without a translation table beyond the
MoE/router nesting (see :func:`ModelConfig.to_params` / :func:`ModelConfig.from_params`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from accord.core.vocab import AUDIO_PAD_ID, CODEBOOK_SIZE, EOA_ID, N_CODEBOOKS, TEXT_VOCAB_SIZE


@dataclass
class RouterConfig:
    """The EDA router: hidden -> R latent, add the previous MoE layer's state, norm, MLP -> E."""

    dim: int = 128  # R, ZONOS2's router latent width (``moe_router_dim``)
    # "legacy" = zonos2.cpp's strategy: choose top-k of (probs + biases), combine with probs.
    strategy: str = "legacy"


@dataclass
class MoEConfig:
    n_experts: int = 16
    topk: int = 1
    # layer index -> top-k override (ZONOS2 uses top-2 in its last MoE layer)
    special_topk_layers: dict[int, int] = field(default_factory=dict)
    start_from_layer: int = 3  # layers [0, start) are dense
    end_from_layer: int = 1  # the last ``end`` layers are dense
    router: RouterConfig = field(default_factory=RouterConfig)


@dataclass
class ModelConfig:
    dim: int = 2048
    n_layers: int = 28
    n_heads: int = 16
    n_kv_heads: int = 4
    head_dim: int = 128
    ffn_dim_multiplier: float = 1.5  # dense and expert FFN width = multiplier * dim, rounded up
    multiple_of: int = 256
    norm_eps: float = 1e-5
    qk_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_seqlen: int = 8192
    loss_softcap: float = 15.0
    n_codebooks: int = N_CODEBOOKS
    codebook_size: int = CODEBOOK_SIZE
    eoa_id: int = EOA_ID
    audio_pad_id: int = AUDIO_PAD_ID
    text_vocab: int = TEXT_VOCAB_SIZE
    speaker_embedding_dim: int = 192  # ECAPA-TDNN output
    speaker_lda_dim: int = 128
    moe: MoEConfig = field(default_factory=MoEConfig)
    attn_backend: str = "auto"  # a key of accord.model.kernels.BACKENDS ("auto": per device)

    # -- derived -----------------------------------------------------------------------
    @property
    def ffn_dim(self) -> int:
        hidden = int(self.ffn_dim_multiplier * self.dim)
        return self.multiple_of * math.ceil(hidden / self.multiple_of)

    @property
    def audio_vocab(self) -> int:
        return self.codebook_size + 2

    @property
    def text_pad_id(self) -> int:
        return self.text_vocab

    def is_moe_layer(self, layer_id: int) -> bool:
        """Same rule as ZONOS2's loader: MoE in [start, n_layers - end) when E > 1."""
        m = self.moe
        return (
            m.n_experts > 1 and layer_id >= m.start_from_layer and self.n_layers - layer_id > m.end_from_layer
        )

    def topk_for_layer(self, layer_id: int) -> int:
        return int(self.moe.special_topk_layers.get(layer_id, self.moe.topk))

    @property
    def moe_layers(self) -> list[int]:
        return [i for i in range(self.n_layers) if self.is_moe_layer(i)]

    def validate(self) -> ModelConfig:
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")
        if self.head_dim % 2:
            raise ValueError("interleaved RoPE needs an even head_dim")
        for layer, k in self.moe.special_topk_layers.items():
            if not 1 <= k <= self.moe.n_experts:
                raise ValueError(f"special_topk_layers[{layer}]={k} outside [1, {self.moe.n_experts}]")
        if self.moe.router.strategy not in ("legacy", "quantile"):
            raise ValueError(f"unknown router strategy {self.moe.router.strategy!r}")
        return self

    # -- ZONOS2 params.json ------------------------------------------------------------
    def to_params(self) -> dict[str, Any]:
        """The keys ZONOS2's loader and zonos2.cpp's converter read from ``params.json``."""
        return {
            "model_type": "zonos2",
            "dim": self.dim,
            "head_dim": self.head_dim,
            "n_heads": self.n_heads,
            "n_kv_heads": self.n_kv_heads,
            "multiple_of": self.multiple_of,
            "ffn_dim_multiplier": self.ffn_dim_multiplier,
            "n_layers": self.n_layers,
            "moe_start_from_layer": self.moe.start_from_layer,
            "moe_end_from_layer": self.moe.end_from_layer,
            "moe_n_experts": self.moe.n_experts,
            "moe_router_topk": self.moe.topk,
            "special_topk_layers": {str(k): int(v) for k, v in sorted(self.moe.special_topk_layers.items())},
            "moe_router_dim": self.moe.router.dim,
            "moe_balancing_strategy": self.moe.router.strategy,
            "max_seqlen": self.max_seqlen,
            "rope_theta": self.rope_theta,
            "norm_eps": self.norm_eps,
            "loss_softcap": self.loss_softcap,
            "n_codebooks": self.n_codebooks,
            "codebook_size": self.codebook_size,
            "eoa_id": self.eoa_id,
            "audio_pad_id": self.audio_pad_id,
            "text_vocab": self.text_vocab,
            # The Python server only builds the speaker projections when this is true.
            "speaker_enabled": True,
            "speaker_embedding_dim": self.speaker_embedding_dim,
            "speaker_lda_dim": self.speaker_lda_dim,
        }

    @classmethod
    def from_params(cls, params: dict[str, Any], router_dim: int | None = None) -> ModelConfig:
        """Inverse of :meth:`to_params`; unknown keys are ignored, as ZONOS2's loader does."""
        p = params.get("model", params) if isinstance(params.get("model"), dict) else params
        dim = int(p["dim"])
        head_dim = int(p["head_dim"])
        n_heads = int(p.get("n_heads") or dim // head_dim)
        special = {int(k): int(v) for k, v in (p.get("special_topk_layers") or {}).items()}
        strategy = str(p.get("moe_balancing_strategy", "legacy")).strip().lower().replace("-", "_")
        strategy = {"old": "legacy", "aux": "legacy", "aux_loss": "legacy", "current": "quantile"}.get(
            strategy, strategy
        )
        if strategy == "qbalancing":
            strategy = "quantile"
        return cls(
            dim=dim,
            n_layers=int(p["n_layers"]),
            n_heads=n_heads,
            n_kv_heads=int(p.get("n_kv_heads") or n_heads),
            head_dim=head_dim,
            ffn_dim_multiplier=float(p["ffn_dim_multiplier"]),
            multiple_of=int(p.get("multiple_of", 256)),
            norm_eps=float(p.get("norm_eps", 1e-5)),
            rope_theta=float(p.get("rope_theta", 10000.0)),
            max_seqlen=int(p.get("max_seqlen", 2048)),
            loss_softcap=float(p.get("loss_softcap", 15.0)),
            n_codebooks=int(p.get("n_codebooks", N_CODEBOOKS)),
            codebook_size=int(p.get("codebook_size", CODEBOOK_SIZE)),
            eoa_id=int(p.get("eoa_id", EOA_ID)),
            audio_pad_id=int(p.get("audio_pad_id", AUDIO_PAD_ID)),
            text_vocab=int(p["text_vocab"]),
            speaker_embedding_dim=int(p.get("speaker_embedding_dim", 128)),
            speaker_lda_dim=int(p.get("speaker_lda_dim") or p.get("speaker_embedding_dim", 128)),
            moe=MoEConfig(
                n_experts=int(p.get("moe_n_experts", 1)),
                topk=int(p.get("moe_router_topk", 1)),
                special_topk_layers=special,
                start_from_layer=int(p.get("moe_start_from_layer", 0)),
                end_from_layer=int(p.get("moe_end_from_layer", 0)),
                router=RouterConfig(dim=int(router_dim or p.get("moe_router_dim", 128)), strategy=strategy),
            ),
        ).validate()

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes).validate()


FLAVOURS: dict[str, ModelConfig] = {
    # Tiny: CPU unit tests and the overfit test (a few seconds per hundred steps).
    "debug": ModelConfig(
        dim=64,
        n_layers=4,
        n_heads=4,
        n_kv_heads=2,
        head_dim=16,
        ffn_dim_multiplier=2.0,
        multiple_of=32,
        max_seqlen=2048,
        speaker_lda_dim=16,
        moe=MoEConfig(
            n_experts=4,
            topk=1,
            special_topk_layers={2: 2},
            start_from_layer=1,
            end_from_layer=1,
            router=RouterConfig(dim=16),
        ),
    ),
    # ~100 M total parameters: trainable on a CPU for the demo and the benches.
    "small": ModelConfig(
        dim=512,
        n_layers=8,
        n_heads=8,
        n_kv_heads=2,
        head_dim=64,
        ffn_dim_multiplier=2.0,
        multiple_of=256,
        max_seqlen=4096,
        speaker_lda_dim=64,
        moe=MoEConfig(
            n_experts=8,
            topk=1,
            special_topk_layers={6: 2},
            start_from_layer=1,
            end_from_layer=1,
            router=RouterConfig(dim=64),
        ),
    ),
    # The released ZONOS2 shape: 28 layers, dense 0-2 and 27, top-2 in the last MoE layer.
    "zonos2-8b": ModelConfig(
        dim=2048,
        n_layers=28,
        n_heads=16,
        n_kv_heads=4,
        head_dim=128,
        ffn_dim_multiplier=1.5,
        multiple_of=256,
        max_seqlen=8192,
        # The release's speaker path: 2048-d voice embedding (zonos2-spk:release) -> LDA 1024.
        speaker_embedding_dim=2048,
        speaker_lda_dim=1024,
        moe=MoEConfig(
            n_experts=16,
            topk=1,
            special_topk_layers={26: 2},
            start_from_layer=3,
            end_from_layer=1,
            router=RouterConfig(dim=128),
        ),
    ),
}


def get_flavour(name: str, **overrides: Any) -> ModelConfig:
    """A fresh copy of a named flavour (mutating it never touches ``FLAVOURS``)."""
    if name not in FLAVOURS:
        raise KeyError(f"unknown model flavour {name!r}; known: {', '.join(FLAVOURS)}")
    cfg = _deepcopy(FLAVOURS[name])
    return cfg.replace(**overrides) if overrides else cfg.validate()


def _deepcopy(cfg: ModelConfig) -> ModelConfig:
    import copy

    return copy.deepcopy(cfg)


@dataclass(frozen=True)
class ParamCount:
    total: int
    active: int  # per token: shared weights + top-k experts of each MoE layer

    def __str__(self) -> str:
        return f"total={_human(self.total)} ({self.total:,}) active={_human(self.active)} ({self.active:,})"


def _human(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def count_params(cfg: ModelConfig) -> ParamCount:
    """Count total and active parameters by building the model on the meta device."""
    import torch

    from accord.model.zonos import ZonosModel

    with torch.device("meta"):
        model = ZonosModel(cfg)
    total = sum(p.numel() for p in model.parameters())
    inactive = 0
    for i in cfg.moe_layers:
        experts = model.layers[i].feed_forward.experts
        per_expert = (experts.w13.numel() + experts.w2.numel()) // cfg.moe.n_experts
        inactive += (cfg.moe.n_experts - cfg.topk_for_layer(i)) * per_expert
    return ParamCount(total=total, active=total - inactive)
