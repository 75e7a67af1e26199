"""Sampling of delayed codebook rows on the device, for B sequences at once.

Each step turns the logits of B rows into the next row's K codes per sequence, as the
released ZONOS2 stack does (``tts/sampler.py`` ``sample_tts`` l.107-250, ``engine/sample.py``
``TTSSampler.prepare`` l.48-130): a repetition penalty over the last ``repetition_window``
sampled rows, then greedy argmax, or temperature, top-k, softmax, top-p, min-p and one draw.
Its defaults are the release's request defaults (``core.py`` ``TTSSamplingParams`` l.55-67).

Which ids a cell may take (``SamplingConfig.rules``):
- ``"release"`` (default): every id, every cell, as the release samples whole rows; codes of
  the audio frames that are special ids (EOA, pad) become the last code, as the release's
  vocoder clamps them (:func:`audio_codes`).
- ``"delay"``: accord's delay-pattern rules past the lead-in. Codebook j is audio pad after
  its EOA; codebook j > 0 emits EOA exactly one step after codebook j - 1 did and never
  samples EOA or pad by itself; codebook 0 may sample EOA (never pad). Every frame is then
  well formed whatever the model scores, which helps a checkpoint early in training.
Both: codebook j's first j steps (its lead-in cells, before its first frame) are sampled
over every id unless ``lead_in`` forces them; EOA is masked before ``min_frames`` and forced
in codebook 0 at ``max_frames`` (the cap; the release stops at ``max_tokens`` instead).
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

from accord.core.errors import ConfigError
from accord.core.vocab import N_SILENCE_FRAMES, SILENCE_FRAMES
from accord.model.config import ModelConfig

MIN_TEMPERATURE = 1e-6  # the release's floor (``engine/sample.py`` l.61)


@dataclass
class SamplingConfig:
    """What the release's request carries (``server/api_server.py`` ``TTSGenerateRequest``
    l.1174-1190, same defaults), plus accord's frame bounds, lead-in and rules."""

    temperature: float | Sequence[float] = 1.15  # one value, or one per codebook; <= 0 is greedy
    top_k: int = 106  # < 1: the codebook size (the release's rule), so 0 still drops EOA and pad
    top_p: float | Sequence[float] = 0.0  # nucleus mass, one or one per codebook; off outside (0, 1)
    min_p: float = 0.18  # drop ids below min_p x the top probability; 0 = off
    repetition_penalty: float = 1.2  # >= 1; 1 = off. Divides positive logits, multiplies negative
    repetition_window: int = 50  # sampled rows whose codes are penalized; 0 = off
    repetition_codebooks: int = 8  # the first n codebooks are penalized; < 0 = all
    max_frames: int = 30 * 86  # EOA is forced at this frame
    min_frames: int = 0  # EOA is masked before this frame
    seed: int | None = None  # None: drawn from torch's global generator
    chunk_frames: int = 0  # streaming chunk size in frames (0: one chunk at the end)
    # Codebook j's first j cells (steps < j): "sample" them over every id as ZONOS2 does;
    # "silence" forces the rest of the prompt's delayed silence (the training targets), "pad"
    # forces audio pad (a prompt without the silence rows). See ``lead_in_codes``.
    lead_in: Literal["sample", "silence", "pad"] = "sample"
    rules: Literal["release", "delay"] = "release"  # which ids a cell may take past its lead-in

    def validate(self) -> SamplingConfig:
        if self.max_frames < 1:
            raise ConfigError(f"max_frames must be >= 1, got {self.max_frames}")
        if not 0 <= self.min_frames <= self.max_frames:
            raise ConfigError(
                f"min_frames must lie in [0, max_frames={self.max_frames}], got {self.min_frames}"
            )
        if self.lead_in not in ("sample", "silence", "pad"):
            raise ConfigError(f"lead_in must be 'sample', 'silence' or 'pad', got {self.lead_in!r}")
        if self.rules not in ("release", "delay"):
            raise ConfigError(f"rules must be 'release' or 'delay', got {self.rules!r}")
        if self.chunk_frames < 0 or self.repetition_window < 0:
            raise ConfigError(
                f"chunk_frames and repetition_window must be >= 0, got {self.chunk_frames}, "
                f"{self.repetition_window}"
            )
        if not self.repetition_penalty >= 1.0 or not self.min_p >= 0.0:
            raise ConfigError(
                f"repetition_penalty must be >= 1 and min_p >= 0, got {self.repetition_penalty}, {self.min_p}"
            )
        return self

    def max_steps(self, n_codebooks: int) -> int:
        """Sampling steps of the longest sequence: max_frames, then the K + 1 countdown."""
        return self.max_frames + n_codebooks + 1

    def penalized_codebooks(self, n_codebooks: int) -> int:
        """How many leading codebooks the repetition penalty covers (0: the penalty is off)."""
        if self.repetition_window == 0 or self.repetition_penalty <= 1.0:
            return 0
        n = self.repetition_codebooks
        return n_codebooks if n < 0 else min(n, n_codebooks)


def per_codebook(value: float | Sequence[float], K: int) -> torch.Tensor:
    """One float per codebook from a scalar or a length-K sequence."""
    t = torch.as_tensor(value, dtype=torch.float32).flatten()
    if t.numel() == 1:
        return t.expand(K).clone()
    if t.numel() != K:
        raise ValueError(f"expected 1 or {K} per-codebook values, got {t.numel()}")
    return t


def top_p_filter(probs_BKV: torch.Tensor, p_K: torch.Tensor) -> torch.Tensor:
    """Zero the tail beyond nucleus mass ``p_K`` where 0 < p < 1 (per codebook; elsewhere off, as
    the release's ``apply_top_p`` l.15-25); the top token always stays."""
    sorted_p, idx = probs_BKV.sort(dim=-1, descending=True)
    on_K1 = ((p_K > 0) & (p_K < 1)).unsqueeze(-1)
    drop = ((sorted_p.cumsum(-1) - sorted_p) > p_K.unsqueeze(-1)) & on_K1
    return torch.zeros_like(probs_BKV).scatter(-1, idx, sorted_p.masked_fill(drop, 0.0))


def min_p_filter(probs_BKV: torch.Tensor, min_p: float) -> torch.Tensor:
    """Zero ids below ``min_p`` times the row's top probability (the release's ``apply_min_p``)."""
    if min_p <= 0.0:
        return probs_BKV
    return probs_BKV.masked_fill(probs_BKV < min_p * probs_BKV.amax(-1, keepdim=True), 0.0)


def penalize_repeats(logits_BKV: torch.Tensor, recent_BKW: torch.Tensor, penalty: float) -> torch.Tensor:
    """The release's ``apply_repetition_penalty`` (l.39-63): an id among codebook k's recent codes
    (``recent_BKW``, -1 where empty) has its logit divided by ``penalty`` if positive, multiplied
    if not; each codebook's history penalizes only its own logits."""
    V = logits_BKV.shape[-1]
    valid_BKW = (recent_BKW >= 0) & (recent_BKW < V)
    counts_BKV = torch.zeros(logits_BKV.shape, dtype=torch.int32, device=logits_BKV.device)
    counts_BKV.scatter_add_(-1, recent_BKW.clamp(0, V - 1), valid_BKW.to(torch.int32))
    adjusted = torch.where(logits_BKV > 0, logits_BKV / penalty, logits_BKV * penalty)
    return torch.where(counts_BKV > 0, adjusted, logits_BKV)


def audio_codes(codes_KT: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """Codes a codec can decode: a special id (EOA, pad) sampled inside an audio frame becomes
    ``codebook_size - 1``, as the release's vocoder clamps them (``tokenizer/vocoder.py``
    ``decode_dac`` l.61). Only ``rules="release"`` can put one there."""
    return codes_KT.clamp(0, codebook_size - 1)


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
    """Sampling state of B sequences that start together, on one device.

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
        host_temp_K, host_p_K = per_codebook(cfg.temperature, self.K), per_codebook(cfg.top_p, self.K)
        self.temp_K, self.top_p_K = host_temp_K.to(self.device), host_p_K.to(self.device)
        # host values, read once: no sync per step
        self.greedy_only = bool((host_temp_K <= 0).all())
        self.use_top_p = bool(((host_p_K > 0) & (host_p_K < 1)).any())  # skip the sort when off
        self.top_k = cfg.top_k if cfg.top_k >= 1 else self.cb  # the release's rule (engine/sample.py l.62)
        self.delay_rules = cfg.rules == "delay"
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
        # the last W sampled rows per codebook (a ring; -1: empty or not penalized)
        n_penalized = cfg.penalized_codebooks(self.K)
        self.penalize = n_penalized > 0  # a host value: no sync per step
        self.penalized_K = self.j_K < n_penalized
        self.recent_BKW = torch.full((batch, self.K, max(cfg.repetition_window, 1)), -1, **new)
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
        self.recent_BKW.fill_(-1)

    def finished(self) -> torch.Tensor:
        """Per sequence [B] bool: its countdown after the first EOA ran out."""
        return (self.eos_frame_B >= 0) & (self.countdown_B <= 0)

    def complete_frames(self) -> torch.Tensor:
        """Per sequence [B] int64: frames whose K codes are all sampled."""
        done_B = (self.steps_B - (self.K - 1)).clamp(min=0)
        return torch.where(self.eos_frame_B >= 0, torch.minimum(done_B, self.eos_frame_B), done_B)

    def _rules(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This step's ``(allowed ids [B, K, V], forced EOA [B, K], forced pad [B, K])``."""
        s, cfg, B, K, V = self.step, self.cfg, self.B, self.K, self.V
        lead_K = s < self.j_K  # the lead-in cells of this step (codebook 0 has none)
        free_lead_K = lead_K & self.free_lead_in
        if not self.delay_rules:
            pad_BK = (lead_K & ~free_lead_K).expand(B, K) | self.finished().unsqueeze(-1)
            force_eoa_BK = torch.zeros_like(pad_BK)
            force_eoa_BK[:, 0] = (s >= cfg.max_frames) & (self.eos_frame_B < 0)
            allowed_BKV = (~self.eoa_V | (s >= cfg.min_frames)).expand(B, K, V)
            return allowed_BKV, force_eoa_BK, pad_BK
        ended_BK = self.eoa_step_BK >= 0
        pad_BK = (lead_K | ended_BK) & ~free_lead_K
        prev_ended_BK = torch.zeros_like(ended_BK)
        prev_ended_BK[:, 1:] = ended_BK[:, :-1] & (self.eoa_step_BK[:, :-1] == s - 1)
        force_eoa_BK = prev_ended_BK & ~pad_BK & ~lead_K
        force_eoa_BK[:, 0] = ~pad_BK[:, 0] & (s >= cfg.max_frames)
        allow_eoa_B = ~pad_BK[:, 0] & (s >= cfg.min_frames)
        allowed_BKV = self.audio_V.expand(B, K, V).clone()
        allowed_BKV[:, 0] |= allow_eoa_B.unsqueeze(-1) & self.eoa_V
        allowed_BKV |= free_lead_K.view(1, K, 1)  # every id, as ZONOS2
        return allowed_BKV, force_eoa_BK, pad_BK

    @torch.no_grad()
    def sample(self, logits_BKV: torch.Tensor) -> torch.Tensor:
        """The next row's codes ``[B, K]`` (int64); advances the state in place, no host sync."""
        s, cfg = self.step, self.cfg
        allowed_BKV, force_eoa_BK, pad_BK = self._rules()
        logits = logits_BKV.float().masked_fill(~allowed_BKV, float("-inf"))
        if self.penalize:
            logits = penalize_repeats(logits, self.recent_BKW, cfg.repetition_penalty)
        row_BK = logits.argmax(-1)
        if not self.greedy_only:
            logits = logits / self.temp_K.clamp(min=MIN_TEMPERATURE).unsqueeze(-1)
            if self.top_k < self.V:
                kth = logits.topk(self.top_k, dim=-1).values[..., -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = torch.softmax(logits, dim=-1)
            if self.use_top_p:
                probs = top_p_filter(probs, self.top_p_K)
            probs = min_p_filter(probs, cfg.min_p)
            q = torch.empty_like(probs).exponential_(1.0, generator=self.generator)
            drawn_BK = (probs / q).argmax(-1)
            drawn_BK = torch.where(probs.sum(-1) > 0, drawn_BK, logits.argmax(-1))  # all filtered: greedy
            row_BK = torch.where(self.temp_K <= 0, row_BK, drawn_BK)
        row_BK = torch.where(force_eoa_BK, self.eoa, row_BK)
        row_BK = torch.where(pad_BK, self.pad, row_BK)
        if not self.free_lead_in:
            lead_K = s < self.j_K
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
        # the release's history: audio codes of penalized codebooks (engine/sample.py l.110-116)
        recent_BK = torch.where(self.penalized_K & (row_BK < self.cb), row_BK, -1)
        slot = torch.remainder(s, self.recent_BKW.shape[-1]).view(1)
        self.recent_BKW.index_copy_(2, slot, recent_BK.unsqueeze(-1))
        self.step.add_(1)
