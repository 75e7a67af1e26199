"""One clip's codes: the single-prompt face of ``accord.model.decode``.

Decoding itself (static KV cache, the release's sampler on the device, CUDA graphs) lives in
``accord.model.decode`` and ``accord.model.sampling``; for many prompts, many calls with one
configuration, or streaming (``Decoder.stream``), hold a ``Decoder`` instead (its buffers and
graphs are built once).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from accord.model.decode import Decoder, GenerationResult
from accord.model.sampling import SamplingConfig
from accord.model.zonos import ZonosModel

__all__ = ["GenerationResult", "SamplingConfig", "generate"]


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
