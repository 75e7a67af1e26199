"""One clip's codes, all at once or streamed: the single-prompt face of ``accord.model.decode``.

Decoding itself (static KV cache, delay rules sampled on the device, CUDA graphs) lives in
``accord.model.decode`` and ``accord.model.sampling``; for many prompts, or many calls with
one configuration, hold a ``Decoder`` instead (its buffers and graphs are built once).
``DelaySampler`` reads one sequence's sampling state on the host: the end state after
``generate_stream``, or a step-by-step sampler over logits you provide.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import torch

from accord.model.decode import Decoder, GenerationResult
from accord.model.sampling import RowSampler, SamplingConfig
from accord.model.zonos import ZonosModel

__all__ = ["DelaySampler", "GenerationResult", "SamplingConfig", "generate", "generate_stream"]


class DelaySampler:
    """The delay-rule sampler of one sequence (a one-row ``RowSampler`` on the CPU), read on the host."""

    def __init__(self, model: ZonosModel, cfg: SamplingConfig) -> None:
        self.cfg = cfg
        self.K = model.cfg.n_codebooks
        self.rows = RowSampler(model.cfg, cfg, batch=1, device="cpu")

    @property
    def finished(self) -> bool:
        return bool(self.rows.finished()[0])

    @property
    def step(self) -> int:
        return int(self.rows.steps_B[0])

    @property
    def eos_frame(self) -> int | None:
        f = int(self.rows.eos_frame_B[0])
        return f if f >= 0 else None

    @property
    def forced_end(self) -> bool:
        return bool(self.rows.forced_end_B[0])

    @property
    def eoa_step(self) -> list[int | None]:
        return [s if s >= 0 else None for s in self.rows.eoa_step_BK[0].tolist()]

    def sample(self, logits_KV: torch.Tensor) -> torch.Tensor:
        """The next row's K ids; advances the state."""
        return self.rows.sample(logits_KV.unsqueeze(0).cpu())[0]

    def complete_frames(self) -> int:
        """Frames whose K codes are all sampled."""
        return int(self.rows.complete_frames()[0])

    def load(self, sampler: RowSampler, row: int) -> None:
        """Take over the state of ``sampler``'s sequence ``row`` (e.g. a decoder's, after decoding)."""
        r = self.rows
        r.eoa_step_BK[0] = sampler.eoa_step_BK[row].cpu()
        r.eos_frame_B[0] = sampler.eos_frame_B[row].cpu()
        r.countdown_B[0] = sampler.countdown_B[row].cpu()
        r.forced_end_B[0] = sampler.forced_end_B[row].cpu()
        r.steps_B[0] = sampler.steps_B[row].cpu()
        r.step.copy_(r.steps_B[0])


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
    decoder = Decoder(model, cfg or SamplingConfig(), batch=1, max_prompt_len=prompt_PC.shape[0])
    for _, chunk in decoder.stream([prompt_PC], [speaker_S]):
        yield chunk
    if sampler is not None:
        sampler.load(decoder.sampler, 0)


def generate(
    model: ZonosModel,
    prompt_PC: torch.Tensor,
    speaker_S: torch.Tensor | None = None,
    cfg: SamplingConfig | None = None,
) -> GenerationResult:
    """Sample one clip's codes (all at once)."""
    cfg = replace(cfg or SamplingConfig(), chunk_frames=0)
    decoder = Decoder(model, cfg, batch=1, max_prompt_len=prompt_PC.shape[0])
    return decoder.generate([prompt_PC], [speaker_S])[0]
