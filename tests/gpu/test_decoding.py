"""Static-KV-cache decoding equals the full forward, on the tier's device, per attention backend.

The full forward runs each backend's causal kernel; the cached steps pass explicit masks (the
static-cache contract of ``ZonosModel.forward``), which every backend runs on SDPA or the reference.
"""

from __future__ import annotations

import pytest
import torch

from accord.model.config import get_flavour
from accord.model.kernels import BACKENDS
from accord.model.static_cache import StaticKVCache
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
    B, S = 2, 64
    cache = StaticKVCache.empty(cfg.n_layers, B, cfg.n_kv_heads, S, cfg.head_dim, dtype, tier.device)

    def step(t0: int, t1: int, **kw) -> torch.Tensor:
        """Rows [t0, t1) on top of the cached rows [0, t0): causal over the filled slots."""
        q_T1 = torch.arange(t0, t1, device=tier.device).unsqueeze(1)
        mask_B1TS = (torch.arange(S, device=tier.device) <= q_T1).expand(B, 1, t1 - t0, S)
        pos_BT = torch.arange(t0, t1, device=tier.device).expand(B, t1 - t0)
        return model(ids[:, t0:t1], positions_BT=pos_BT, cache=cache, mask_B1TS=mask_B1TS, **kw).logits_BTKV

    with torch.no_grad():
        full = model(ids, speaker_NS=spk).logits_BTKV.float()
        parts = [step(0, 13, speaker_NS=spk)]  # prefill
        parts.append(step(13, 21))  # a multi-row chunk
        parts += [step(t, t + 1) for t in range(21, 40)]
    assert cache.length.tolist() == [40] * B
    got = torch.cat(parts, dim=1).float()
    tol = tier.rtol(dtype)
    torch.testing.assert_close(got, full, rtol=tol, atol=tol * 15)  # logits are soft-capped at 15
