"""ZonosModel.forward's explicit-mask contract for decoders with a fixed-size (static) KV cache."""

from __future__ import annotations

import pytest
import torch

from accord.model.static_cache import StaticKVCache

from .conftest import random_ids


def test_static_cache_with_explicit_mask_equals_full_forward(debug_model, debug_cfg):
    c, B, T, S = debug_cfg, 2, 12, 16
    ids = random_ids(c, B, T)
    cache = StaticKVCache.empty(c.n_layers, B, c.n_kv_heads, S, c.head_dim)  # full buffers, [B] length
    length_tensor = cache.length
    with torch.no_grad():
        full = debug_model(ids).logits_BTKV
        parts = []
        for t0, t1 in [(0, 5), *((t, t + 1) for t in range(5, T))]:  # a prefill, then rows
            q_T1 = torch.arange(t0, t1).unsqueeze(1)
            mask_B1TS = (torch.arange(S) <= q_T1).expand(B, 1, t1 - t0, S)
            pos_BT = torch.arange(t0, t1).expand(B, t1 - t0)
            out = debug_model(ids[:, t0:t1], positions_BT=pos_BT, cache=cache, mask_B1TS=mask_B1TS)
            parts.append(out.logits_BTKV)
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-4, rtol=1e-4)
    assert cache.length is length_tensor and cache.length.tolist() == [T] * B  # advanced in place


def test_explicit_mask_rejects_ambiguous_input(debug_model, debug_cfg):
    ids = random_ids(debug_cfg, 1, 4)
    mask = torch.ones(1, 1, 4, 4, dtype=torch.bool).tril()
    with pytest.raises(ValueError, match="positions_BT"):
        debug_model(ids, mask_B1TS=mask)
    with pytest.raises(ValueError, match="doc_ids_BT"):
        debug_model(
            ids,
            doc_ids_BT=torch.zeros(1, 4, dtype=torch.long),
            mask_B1TS=mask,
            positions_BT=torch.arange(4)[None],
        )
    with pytest.raises(ValueError, match="bool"):
        debug_model(ids, mask_B1TS=mask.float(), positions_BT=torch.arange(4)[None])
