"""KV-cache decoding equals the full forward, on the tier's device, per attention backend."""

from __future__ import annotations

import pytest
import torch

from accord.model.config import get_flavour
from accord.model.kernels import BACKENDS
from accord.model.zonos import ZonosModel

from .conftest import random_ids

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_kv_cache_decoding_equals_full_forward(tier, backend: str, dtype: torch.dtype) -> None:
    if dtype == torch.bfloat16 and not tier.cuda:
        pytest.skip("bf16 inference is the CUDA path")
    cfg = get_flavour(tier.flavour)
    torch.manual_seed(0)
    model = ZonosModel(cfg).to(tier.device, dtype).eval()
    model.set_attention_backend(backend)
    ids = random_ids(cfg, 2, 40).to(tier.device)
    spk = torch.randn(2, cfg.speaker_embedding_dim, device=tier.device)
    with torch.no_grad():
        full = model(ids, speaker_NS=spk).logits_BTKV.float()
        cache = model.new_cache(2, 64)
        parts = [model(ids[:, :13], speaker_NS=spk, cache=cache).logits_BTKV]  # prefill
        parts.append(model(ids[:, 13:21], cache=cache).logits_BTKV)  # a multi-row chunk
        parts += [model(ids[:, t : t + 1], cache=cache).logits_BTKV for t in range(21, 40)]
    got = torch.cat(parts, dim=1).float()
    tol = tier.rtol(dtype)
    torch.testing.assert_close(got, full, rtol=tol, atol=tol * 15)  # logits are soft-capped at 15
