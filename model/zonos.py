"""The ZONOS2-style decoder: multi-codebook frame embedding, MoE transformer, 9 output heads.

Input ``ids_BTC`` has C = n_codebooks + 1 columns, audio first, text last (ZONOS2 layout);
the delay pattern is already applied. Row embeddings are summed over columns; rows named by
``speaker_pos_N2`` are replaced by the projected speaker vector (LDA, then a linear to D);
then an RMSNorm without scale. Output logits [B, T, K, cb+2] are soft-capped 15*tanh(x/15).
Module names equal ZONOS2's state-dict keys, so ``state_dict()`` *is* the checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from accord.model.block import TransformerBlock
from accord.model.config import ModelConfig
from accord.model.ffn import ChunkedLinear
from accord.model.kernels import resolve_backend
from accord.model.masks import AttentionMask
from accord.model.moe import GroupedExperts
from accord.model.norms import RMSNorm
from accord.model.rope import RotaryEmbedding
from accord.model.static_cache import StaticKVCache


@dataclass
class ModelOutput:
    logits_BTKV: torch.Tensor
    balance_loss: torch.Tensor  # sum over MoE layers; see accord.model.router
    router_stats: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> tokens per expert


def softcap(x: torch.Tensor, cap: float) -> torch.Tensor:
    return cap * torch.tanh(x / cap) if cap > 0 else x


def positions_from_docs(doc_ids_BT: torch.Tensor) -> torch.Tensor:
    """Position of each row within its (contiguous) document, restarting at 0 per document."""
    B, T = doc_ids_BT.shape
    t_BT = torch.arange(T, device=doc_ids_BT.device).expand(B, T)
    is_start = torch.ones_like(doc_ids_BT, dtype=torch.bool)
    is_start[:, 1:] = doc_ids_BT[:, 1:] != doc_ids_BT[:, :-1]
    start_BT = torch.where(is_start, t_BT, torch.zeros_like(t_BT)).cummax(dim=1).values
    return t_BT - start_BT


class MultiEmbedding(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        tables = [nn.Embedding(cfg.audio_vocab, cfg.dim) for _ in range(cfg.n_codebooks)]
        tables.append(nn.Embedding(cfg.text_vocab + 1, cfg.dim))  # + text padding row
        self.embedders = nn.ModuleList(tables)

    def forward(self, ids_BTC: torch.Tensor) -> torch.Tensor:
        x_BTD = self.embedders[0](ids_BTC[..., 0])
        for i in range(1, len(self.embedders)):
            x_BTD = x_BTD + self.embedders[i](ids_BTC[..., i])
        return x_BTD


class ZonosModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.multi_embedder = MultiEmbedding(cfg)
        self.emb_norm = RMSNorm(cfg.dim, cfg.norm_eps, elementwise_affine=False)
        self.speaker_lda_projection = nn.Linear(cfg.speaker_embedding_dim, cfg.speaker_lda_dim, bias=True)
        self.speaker_projection = nn.Linear(cfg.speaker_lda_dim, cfg.dim, bias=True)
        self.rope = RotaryEmbedding(cfg.head_dim, cfg.rope_theta)
        self.layers = nn.ModuleList(TransformerBlock(cfg, i) for i in range(cfg.n_layers))
        self.out_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.multi_output = nn.Linear(cfg.dim, cfg.n_codebooks * cfg.audio_vocab, bias=False)
        self.set_attention_backend(cfg.attn_backend)
        if not any(p.is_meta for p in self.parameters()):
            self.init_weights()

    # -- setup ---------------------------------------------------------------------------
    def set_attention_backend(self, name: str) -> None:
        """One of ``accord.model.kernels.BACKENDS``; kernels are then chosen per forward."""
        self.attn_backend = resolve_backend(name)
        for layer in self.layers:
            layer.attention.backend = self.attn_backend

    def set_moe_impl(self, impl: str) -> None:
        """ "auto" | "grouped_mm" | "padded" | "loop" for every MoE layer."""
        for m in self.modules():
            if isinstance(m, GroupedExperts):
                m.impl = impl

    @torch.no_grad()
    def init_weights(self, std: float = 0.02) -> None:
        """Normal(0, std) weights; residual-branch outputs scaled by 1/sqrt(2 n_layers)."""
        out_std = std / math.sqrt(2 * self.cfg.n_layers)
        for name, m in self.named_modules():
            if isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=1.0)  # summed, then RMS-normalised
            elif isinstance(m, nn.Linear):
                is_out = name.endswith((".wo", ".w_out"))
                nn.init.normal_(m.weight, std=out_std if is_out else std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, ChunkedLinear):
                nn.init.normal_(m.weight, std=std)
            elif isinstance(m, GroupedExperts):
                nn.init.normal_(m.w13, std=std)
                nn.init.normal_(m.w2, std=out_std)
            elif isinstance(m, (RMSNorm, RotaryEmbedding)):
                m.reset_parameters()
        for layer in self.layers:
            layer.attention.temp.fill_(1.0)
            if layer.is_moe:
                router = layer.feed_forward.router
                router.balancing_biases.zero_()
                if router.use_eda:
                    router.router_states_scale.fill_(1.0)

    # -- forward -------------------------------------------------------------------------
    def project_speaker(self, speaker_NS: torch.Tensor) -> torch.Tensor:
        """Raw speaker embeddings -> LDA space -> hidden size."""
        w = self.speaker_lda_projection.weight
        return self.speaker_projection(self.speaker_lda_projection(speaker_NS.to(w.dtype)))

    def forward(
        self,
        ids_BTC: torch.Tensor,
        doc_ids_BT: torch.Tensor | None = None,
        speaker_NS: torch.Tensor | None = None,
        speaker_pos_N2: torch.Tensor | None = None,
        positions_BT: torch.Tensor | None = None,
        cache: StaticKVCache | None = None,
        mask_B1TS: torch.Tensor | None = None,
    ) -> ModelOutput:
        """Logits for ``ids_BTC``; with ``cache``, the new rows attend to the cached prefix too.

        Masking and positions come from one of:
        - ``doc_ids_BT``: packed documents; causal within each document, positions restart
          per document (no cache);
        - ``mask_B1TS`` (bool [B, 1, T, S], True = may attend) with ``positions_BT``: used as
          is. This is the static-cache contract, the only way to pass a ``cache``: a decoder
          whose ``cache.update(layer, k, v)`` returns its preallocated buffers (S = their
          span) passes which cache slots are valid and each new row's position, so nothing
          here reads ``cache.length`` (a device tensor: reading it would sync or break graph
          capture). After the last layer ``cache.length += T`` advances it in place;
        - neither: causal, positions ``0..T - 1`` unless ``positions_BT`` is given (no cache).
        """
        cfg = self.cfg
        B, T, C = ids_BTC.shape
        if cfg.n_codebooks + 1 != C:
            raise ValueError(f"ids have {C} columns, expected n_codebooks + 1 = {cfg.n_codebooks + 1}")
        x_BTD = self.multi_embedder(ids_BTC)
        if speaker_NS is not None and speaker_NS.numel():
            if speaker_pos_N2 is None:
                speaker_pos_N2 = torch.stack([torch.arange(B), torch.zeros(B, dtype=torch.long)], 1)
            spk_ND = self.project_speaker(speaker_NS).to(x_BTD.dtype)
            pos = speaker_pos_N2.to(device=x_BTD.device, dtype=torch.long)
            x_BTD = x_BTD.index_put((pos[:, 0], pos[:, 1]), spk_ND)
        x_BTD = self.emb_norm(x_BTD)

        device = x_BTD.device
        if mask_B1TS is not None:  # static-cache contract: used as is, cache.length not read
            if doc_ids_BT is not None or positions_BT is None:
                raise ValueError("an explicit mask_B1TS needs positions_BT and excludes doc_ids_BT")
        elif cache is not None:
            raise ValueError("a KV cache needs an explicit mask_B1TS (the static-cache contract)")
        elif doc_ids_BT is not None:
            doc_ids_BT = doc_ids_BT.to(device)
            if positions_BT is None:
                positions_BT = positions_from_docs(doc_ids_BT)
        elif positions_BT is None:
            positions_BT = torch.arange(T, device=device).expand(B, T)
        rope = self.rope(positions_BT)
        # Built once here, kernel included, and handed to every layer as data: a checkpointed
        # layer's recomputation cannot pick another kernel.
        mask = AttentionMask.build(
            self.attn_backend,
            device=device,
            dtype=self.attention_dtype(device),
            head_dim=cfg.head_dim,
            q_len=T,
            doc_ids_BT=doc_ids_BT,
            explicit_B1TS=mask_B1TS,
        )

        balance = x_BTD.new_zeros((), dtype=torch.float32)
        stats: dict[int, torch.Tensor] = {}
        state = None
        for layer in self.layers:
            x_BTD, state, routed = layer(x_BTD, rope, mask, state, cache)
            if routed is not None:
                balance = balance + routed.balance_loss
                stats[layer.layer_id] = routed.counts_E
        if cache is not None:
            cache.length += T
        logits = self.multi_output(self.out_norm(x_BTD)).view(B, T, cfg.n_codebooks, cfg.audio_vocab)
        return ModelOutput(softcap(logits, cfg.loss_softcap), balance, stats)

    def attention_dtype(self, device: torch.device) -> torch.dtype:
        """The dtype q/k/v will have: autocast's when it is on, else the weights'."""
        if torch.is_autocast_enabled(device.type):
            return torch.get_autocast_dtype(device.type)
        return self.multi_output.weight.dtype
