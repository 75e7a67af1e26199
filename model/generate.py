"""KV-cache sampling of delayed codebook rows, with end-of-audio handling and streaming.

Each step feeds one row and samples the next row's K codes. The delay pattern fixes most
choices, so the sampler forces them rather than trusting the model:
- codebook j is audio pad before its start (step < j) and after its EOA;
- codebook j > 0 emits EOA exactly one step after codebook j - 1 did (all codebooks end on
  the same frame); it never samples EOA or pad by itself;
- codebook 0 may sample EOA (never pad); at ``max_frames`` EOA is forced.
End of audio follows ZONOS2: on the first EOA, ``eos_frame = step - codebook`` and a
countdown of n_codebooks + 1 steps runs before the sequence stops. A frame is complete once
its last codebook (j = K - 1) has been sampled, so streaming yields frames K - 1 steps late.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import torch
from accord.model.zonos import ZonosModel


@dataclass
class SamplingConfig:
    temperature: float | Sequence[float] = 0.8  # one value, or one per codebook; <= 0 is greedy
    top_p: float | Sequence[float] = 0.9  # nucleus mass, one value or one per codebook
    top_k: int = 0  # 0 = off
    max_frames: int = 30 * 86  # EOA is forced at this frame
    min_frames: int = 0  # EOA is masked before this frame
    seed: int | None = None
    chunk_frames: int = 0  # streaming chunk size in frames (0: one chunk at the end)


@dataclass
class GenerationResult:
    codes_KT: torch.Tensor  # undelayed codes, int64
    ended: bool  # True when the model emitted EOA itself (not forced by max_frames)
    steps: int


def _per_codebook(value: float | Sequence[float], K: int) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float32).flatten()
    if t.numel() == 1:
        return t.expand(K).clone()
    if t.numel() != K:
        raise ValueError(f"expected 1 or {K} per-codebook values, got {t.numel()}")
    return t


def _top_p(probs_KV: torch.Tensor, p_K: torch.Tensor) -> torch.Tensor:
    sorted_p, idx = probs_KV.sort(dim=-1, descending=True)
    drop = (sorted_p.cumsum(-1) - sorted_p) > p_K.unsqueeze(-1)
    sorted_p = sorted_p.masked_fill(drop, 0.0)
    return torch.zeros_like(probs_KV).scatter(-1, idx, sorted_p)


class DelaySampler:
    """Per-sequence sampling state: which codebooks ended, where the audio ends."""

    def __init__(self, model: ZonosModel, cfg: SamplingConfig) -> None:
        c = model.cfg
        self.K, self.eoa, self.pad, self.cb = c.n_codebooks, c.eoa_id, c.audio_pad_id, c.codebook_size
        self.cfg = cfg
        self.temp_K = _per_codebook(cfg.temperature, self.K)
        self.top_p_K = _per_codebook(cfg.top_p, self.K)
        self.gen = torch.Generator().manual_seed(cfg.seed) if cfg.seed is not None else None
        self.eoa_step: list[int | None] = [None] * self.K
        self.eos_frame: int | None = None
        self.countdown = 0
        self.forced_end = False
        self.step = 0

    @property
    def finished(self) -> bool:
        return self.eos_frame is not None and self.countdown <= 0

    def sample(self, logits_KV: torch.Tensor) -> torch.Tensor:
        """The next row's K ids; advances the state."""
        s, K = self.step, self.K
        logits = logits_KV.float().clone()
        V = logits.shape[-1]
        allowed = torch.zeros(K, V, dtype=torch.bool)
        allowed[:, : self.cb] = True
        forced: dict[int, int] = {}
        for j in range(K):
            if s < j or self.eoa_step[j] is not None:
                forced[j] = self.pad
            elif j > 0 and self.eoa_step[j - 1] == s - 1:
                forced[j] = self.eoa
            elif j == 0:
                if s >= self.cfg.max_frames:
                    forced[j] = self.eoa
                    self.forced_end = True
                elif s >= self.cfg.min_frames:
                    allowed[0, self.eoa] = True
        logits = logits.masked_fill(~allowed, float("-inf"))
        if self.cfg.top_k > 0:
            kth = logits.topk(min(self.cfg.top_k, V), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        greedy_K = logits.argmax(-1)
        probs = torch.softmax(logits / self.temp_K.clamp(min=1e-5).unsqueeze(-1), dim=-1)
        probs = _top_p(probs, self.top_p_K)
        sampled_K = torch.multinomial(probs, 1, generator=self.gen).squeeze(-1)
        row_K = torch.where(self.temp_K <= 0, greedy_K, sampled_K)
        for j, v in forced.items():
            row_K[j] = v
        self._advance(row_K)
        return row_K

    def _advance(self, row_K: torch.Tensor) -> None:
        s = self.step
        ended = [j for j in range(self.K) if int(row_K[j]) == self.eoa and self.eoa_step[j] is None]
        for j in ended:
            self.eoa_step[j] = s
        if self.eos_frame is None and ended:
            self.eos_frame = max(0, s - max(ended))
            self.countdown = self.K + 1
        if self.eos_frame is not None and self.countdown > 0:
            self.countdown -= 1
        self.step += 1

    def complete_frames(self) -> int:
        """Frames whose K codes are all sampled."""
        done = max(0, self.step - (self.K - 1))
        return min(done, self.eos_frame) if self.eos_frame is not None else done


def _frames(rows_SK: list[torch.Tensor], start: int, stop: int, K: int) -> torch.Tensor:
    return torch.stack(
        [torch.stack([rows_SK[f + j][j] for j in range(K)]) for f in range(start, stop)], dim=1
    )


@torch.no_grad()
def generate_stream(
    model: ZonosModel,
    prompt_PC: torch.Tensor,
    speaker_S: torch.Tensor | None = None,
    cfg: SamplingConfig | None = None,
    sampler: DelaySampler | None = None,
) -> Iterator[torch.Tensor]:
    """Yield undelayed code chunks ``[K, n]`` as frames complete (``cfg.chunk_frames`` each).

    Pass ``sampler`` to inspect the end state (``eos_frame``, ``forced_end``) afterwards.
    """
    cfg = cfg or SamplingConfig()
    model.eval()
    sampler = sampler or DelaySampler(model, cfg)
    K = sampler.K
    device = next(model.parameters()).device
    max_steps = cfg.max_frames + K + 1
    cache = model.new_cache(1, prompt_PC.shape[0] + max_steps + 1)
    spk = None if speaker_S is None else speaker_S.reshape(1, -1).to(device)
    pos = torch.zeros(1, 2, dtype=torch.long)
    out = model(prompt_PC[None].to(device), speaker_NS=spk, speaker_pos_N2=pos, cache=cache)
    text_pad = torch.tensor([model.cfg.text_pad_id])
    rows: list[torch.Tensor] = []
    emitted = 0
    while not sampler.finished and sampler.step < max_steps:
        row_K = sampler.sample(out.logits_BTKV[0, -1].cpu())
        rows.append(row_K)
        ready = sampler.complete_frames()
        if cfg.chunk_frames > 0 and ready - emitted >= cfg.chunk_frames:
            yield _frames(rows, emitted, ready, K)
            emitted = ready
        if sampler.finished:
            break
        ids_11C = torch.cat([row_K, text_pad]).view(1, 1, -1).to(device)
        out = model(ids_11C, cache=cache)
    ready = sampler.complete_frames()
    if ready > emitted:
        yield _frames(rows, emitted, ready, K)


def generate(
    model: ZonosModel,
    prompt_PC: torch.Tensor,
    speaker_S: torch.Tensor | None = None,
    cfg: SamplingConfig | None = None,
) -> GenerationResult:
    """Sample one clip's codes (all at once)."""
    cfg = replace(cfg or SamplingConfig(), chunk_frames=0)
    sampler = DelaySampler(model, cfg)
    chunks = list(generate_stream(model, prompt_PC, speaker_S, cfg, sampler))
    K = model.cfg.n_codebooks
    codes = torch.cat(chunks, dim=1) if chunks else torch.empty(K, 0, dtype=torch.long)
    return GenerationResult(codes, ended=sampler.eos_frame is not None and not sampler.forced_end,
                            steps=sampler.step)  # fmt: skip
