"""Sampling of delayed codebook rows on the device, for B sequences at once.

Each step turns the logits of B rows into the next row's K codes per sequence.
Codebook j's first j steps (the lead-in cells: before its first frame, which the prompt's
delayed silence leads into) are sampled like ZONOS2 samples them, over every id with no rule
applied, and stay in the context; they never reach the audio (ZONOS2 ``tts/sampler.py``
``sample_tts`` l.172-230 samples whole rows, ``tokenizer/vocoder.py`` ``shear_up`` l.29-47
drops them). ``SamplingConfig.lead_in`` can force them instead (accord's earlier rule).
After the lead-in the delay pattern fixes most choices, so the sampler forces them rather
than trusting the model:
- codebook j is audio pad after its EOA;
- codebook j > 0 emits EOA exactly one step after codebook j - 1 did (all codebooks end on
  the same frame); it never samples EOA or pad by itself;
- codebook 0 may sample EOA (never pad) from ``min_frames`` on; at ``max_frames`` EOA is forced.
End of audio follows ZONOS2 (``core.py`` ``check_eos`` l.147-178): on the first EOA, a
lead-in one included, ``eos_frame = max(0, step - codebook)`` and a countdown of
n_codebooks + 1 steps runs before the sequence stops. A frame is complete once its last
codebook (j = K - 1) has been sampled, so frames complete K - 1 steps late.

All state lives in device tensors updated in place and :meth:`RowSampler.sample` never reads a
value back to the host, so a decode step including sampling can be captured in a CUDA graph
and the host only checks ``finished()`` every few steps. Draws use the exponential race
(``argmax(p / q)``, ``q ~ Exp(1)``): the same numbers ``torch.multinomial`` draws for one
sample, without its host-side validity check. One generator serves the whole batch, so a
sampled row depends on the seed and on its batch (its slot, the batch size); greedy rows
depend on neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from accord.core.vocab import N_SILENCE_FRAMES, SILENCE_FRAMES
from accord.model.config import ModelConfig


@dataclass
class SamplingConfig:
    temperature: float | Sequence[float] = 0.8  # one value, or one per codebook; <= 0 is greedy
    top_p: float | Sequence[float] = 0.9  # nucleus mass, one value or one per codebook
    top_k: int = 0  # 0 = off
    max_frames: int = 30 * 86  # EOA is forced at this frame
    min_frames: int = 0  # EOA is masked before this frame
    seed: int | None = None  # None: drawn from torch's global generator
    chunk_frames: int = 0  # streaming chunk size in frames (0: one chunk at the end)
    # Codebook j's first j cells (steps < j): "sample" them over every id as ZONOS2 does;
    # "silence" forces the rest of the prompt's delayed silence (the training targets), "pad"
    # forces audio pad (a prompt without the silence rows). See ``lead_in_codes``.
    lead_in: Literal["sample", "silence", "pad"] = "sample"

    def validate(self) -> SamplingConfig:
        if self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {self.max_frames}")
        if not 0 <= self.min_frames <= self.max_frames:
            raise ValueError(
                f"min_frames must lie in [0, max_frames={self.max_frames}], got {self.min_frames}"
            )
        if self.lead_in not in ("sample", "silence", "pad"):
            raise ValueError(f"lead_in must be 'sample', 'silence' or 'pad', got {self.lead_in!r}")
        if self.top_k < 0 or self.chunk_frames < 0:
            raise ValueError(f"top_k and chunk_frames must be >= 0, got {self.top_k}, {self.chunk_frames}")
        return self

    def max_steps(self, n_codebooks: int) -> int:
        """Sampling steps of the longest sequence: max_frames, then the K + 1 countdown."""
        return self.max_frames + n_codebooks + 1


def per_codebook(value: float | Sequence[float], K: int) -> torch.Tensor:
    """One float per codebook from a scalar or a length-K sequence."""
    t = torch.as_tensor(value, dtype=torch.float32).flatten()
    if t.numel() == 1:
        return t.expand(K).clone()
    if t.numel() != K:
        raise ValueError(f"expected 1 or {K} per-codebook values, got {t.numel()}")
    return t


def top_p_filter(probs_BKV: torch.Tensor, p_K: torch.Tensor) -> torch.Tensor:
    """Zero the tail beyond nucleus mass ``p_K`` (per codebook); the top token always stays."""
    sorted_p, idx = probs_BKV.sort(dim=-1, descending=True)
    drop = (sorted_p.cumsum(-1) - sorted_p) > p_K.unsqueeze(-1)
    return torch.zeros_like(probs_BKV).scatter(-1, idx, sorted_p.masked_fill(drop, 0.0))


def draw_seed() -> int:
    """A seed from torch's global CPU generator, so ``torch.manual_seed`` reproduces runs."""
    return int(torch.randint(0, 2**62, ()))


def lead_in_codes(K: int, pad_id: int, silence: bool) -> torch.Tensor:
    """``[K, K]``: a forced lead-in, codebook j's code at step s < j. After a prompt that ends
    with the release's delayed silence rows these continue it (frame ``N - j + s`` of
    ``SILENCE_FRAMES``, the training targets); otherwise they are audio pad. Entries with
    s >= j are never used."""
    lead_SK = torch.full((K, K), pad_id, dtype=torch.long)
    if silence:
        if K > N_SILENCE_FRAMES or len(SILENCE_FRAMES[0]) != K:
            n = len(SILENCE_FRAMES[0])
            raise ValueError(f"the silence lead-in is defined for {n} codebooks, not {K}")
        for j in range(K):
            for step in range(j):
                lead_SK[step, j] = SILENCE_FRAMES[N_SILENCE_FRAMES - j + step][j]
    return lead_SK


class RowSampler:
    """Delay-pattern sampling state of B sequences that start together, on one device.

    ``step`` counts calls to :meth:`sample` (all sequences share it); a finished sequence
    keeps its state and gets audio pad rows, so a static batch runs on while others finish.
    """

    def __init__(
        self, model_cfg: ModelConfig, cfg: SamplingConfig, batch: int, device: torch.device | str = "cpu"
    ) -> None:
        self.cfg = cfg.validate()
        c = model_cfg
        self.K, self.V, self.B = c.n_codebooks, c.audio_vocab, batch
        self.eoa, self.pad, self.cb = c.eoa_id, c.audio_pad_id, c.codebook_size
        self.device = torch.device(device)
        self.temp_K = per_codebook(cfg.temperature, self.K).to(self.device)
        self.top_p_K = per_codebook(cfg.top_p, self.K).to(self.device)
        self.greedy_only = bool((per_codebook(cfg.temperature, self.K) <= 0).all())  # host values
        self.generator = torch.Generator(device=self.device)
        self.j_K = torch.arange(self.K, device=self.device)
        self.audio_V = torch.arange(self.V, device=self.device) < self.cb
        # lead_SK[s, j]: what a forced lead-in puts in codebook j at step s < j
        self.free_lead_in = cfg.lead_in == "sample"
        forced_silence = cfg.lead_in == "silence"
        self.lead_SK = lead_in_codes(self.K, self.pad, forced_silence).to(self.device)
        self.eoa_V = torch.arange(self.V, device=self.device) == self.eoa
        new = {"dtype": torch.long, "device": self.device}
        self.step = torch.zeros((), **new)
        self.eoa_step_BK = torch.full((batch, self.K), -1, **new)  # -1: not ended
        self.eos_frame_B = torch.full((batch,), -1, **new)  # -1: not ended
        self.countdown_B = torch.zeros(batch, **new)
        self.steps_B = torch.zeros(batch, **new)  # steps sampled before finishing
        self.forced_end_B = torch.zeros(batch, dtype=torch.bool, device=self.device)
        self.reset(cfg.seed)

    def reset(self, seed: int | None = None) -> None:
        """Fresh sequences; ``seed=None`` draws one from torch's global generator."""
        self.generator.manual_seed(draw_seed() if seed is None else seed)
        self.step.zero_()
        self.eoa_step_BK.fill_(-1)
        self.eos_frame_B.fill_(-1)
        self.countdown_B.zero_()
        self.steps_B.zero_()
        self.forced_end_B.zero_()

    def finished(self) -> torch.Tensor:
        """Per sequence [B] bool: its countdown after the first EOA ran out."""
        return (self.eos_frame_B >= 0) & (self.countdown_B <= 0)

    def complete_frames(self) -> torch.Tensor:
        """Per sequence [B] int64: frames whose K codes are all sampled."""
        done_B = (self.steps_B - (self.K - 1)).clamp(min=0)
        return torch.where(self.eos_frame_B >= 0, torch.minimum(done_B, self.eos_frame_B), done_B)

    @torch.no_grad()
    def sample(self, logits_BKV: torch.Tensor) -> torch.Tensor:
        """The next row's codes ``[B, K]`` (int64); advances the state in place, no host sync."""
        s, cfg = self.step, self.cfg
        logits = logits_BKV.float()
        lead_K = s < self.j_K  # the lead-in cells of this step (codebook 0 has none)
        ended_BK = self.eoa_step_BK >= 0
        pad_BK = (lead_K | ended_BK) & ~(lead_K & self.free_lead_in)
        prev_ended_BK = torch.zeros_like(ended_BK)
        prev_ended_BK[:, 1:] = ended_BK[:, :-1] & (self.eoa_step_BK[:, :-1] == s - 1)
        force_eoa_BK = prev_ended_BK & ~pad_BK & ~lead_K
        force_eoa_BK[:, 0] = ~pad_BK[:, 0] & (s >= cfg.max_frames)
        allow_eoa_B = ~pad_BK[:, 0] & (s >= cfg.min_frames)
        allowed_BKV = self.audio_V.expand(self.B, self.K, self.V).clone()
        allowed_BKV[:, 0] |= allow_eoa_B.unsqueeze(-1) & self.eoa_V
        allowed_BKV |= (lead_K & self.free_lead_in).view(1, self.K, 1)  # every id, as ZONOS2
        logits = logits.masked_fill(~allowed_BKV, float("-inf"))
        if cfg.top_k > 0:
            kth = logits.topk(min(cfg.top_k, self.V), dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        row_BK = logits.argmax(-1)
        if not self.greedy_only:
            probs = torch.softmax(logits / self.temp_K.clamp(min=1e-5).unsqueeze(-1), dim=-1)
            probs = top_p_filter(probs, self.top_p_K)
            q = torch.empty_like(probs).exponential_(1.0, generator=self.generator)
            row_BK = torch.where(self.temp_K <= 0, row_BK, (probs / q).argmax(-1))
        row_BK = torch.where(force_eoa_BK, self.eoa, row_BK)
        row_BK = torch.where(pad_BK, self.pad, row_BK)
        if not self.free_lead_in:
            row_BK = torch.where(lead_K, self.lead_SK[s.clamp(max=self.K - 1)], row_BK)
        self._advance(row_BK, force_eoa_BK[:, 0])
        return row_BK

    def _advance(self, row_BK: torch.Tensor, forced_eoa_B: torch.Tensor) -> None:
        s, K = self.step, self.K
        active_B = ~self.finished()
        new_BK = (row_BK == self.eoa) & (self.eoa_step_BK < 0) & active_B.unsqueeze(-1)
        self.eoa_step_BK.copy_(torch.where(new_BK, s, self.eoa_step_BK))
        last_new_B = (new_BK * (self.j_K + 1)).amax(-1) - 1  # highest codebook ending now, or -1
        starts_B = (self.eos_frame_B < 0) & (last_new_B >= 0)
        self.eos_frame_B.copy_(torch.where(starts_B, (s - last_new_B).clamp(min=0), self.eos_frame_B))
        self.countdown_B.copy_(torch.where(starts_B, K + 1, self.countdown_B))
        counting_B = (self.eos_frame_B >= 0) & (self.countdown_B > 0)
        self.countdown_B.sub_(counting_B.long())
        self.forced_end_B.logical_or_(forced_eoa_B & active_B)
        self.steps_B.add_(active_B.long())
        self.step.add_(1)
