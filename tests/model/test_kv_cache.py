"""Incremental decoding: the static KV cache equals the full forward; the delay pattern holds."""

from __future__ import annotations

import pytest
import torch

from accord.core.vocab import AUDIO_PAD_ID, EOA_ID
from accord.model.decode import Decoder
from accord.model.generate import SamplingConfig, generate
from accord.model.sampling import RowSampler
from accord.model.sequence import build_prompt

from .conftest import random_ids


@pytest.fixture(autouse=True)
def _one_thread():
    """Steps of the debug model are tiny: a second thread only waits (much slower on a busy CPU)."""
    torch.set_num_threads(1)


def test_generation_obeys_delay_and_ends_on_eoa(debug_model, debug_cfg):
    prompt = build_prompt("hello")
    with torch.no_grad():  # make codebook 0 love EOA after a few frames: bias its logit upward
        debug_model.multi_output.weight[EOA_ID].mul_(0)
    res = generate(
        debug_model, prompt, None, SamplingConfig(max_frames=30, seed=3, temperature=1.0, rules="delay")
    )
    K = debug_cfg.n_codebooks
    assert res.codes_KT.shape[0] == K and res.codes_KT.shape[1] <= 30
    assert int(res.codes_KT.max()) < 1024 and int(res.codes_KT.min()) >= 0
    assert res.steps == res.codes_KT.shape[1] + K + 1 or res.steps == 30 + K + 1


def test_forced_end_at_max_frames_and_row_structure(debug_cfg):
    # the rules alone
    cfg = SamplingConfig(max_frames=6, seed=0, min_frames=6, lead_in="silence", rules="delay")
    sampler = RowSampler(debug_cfg, cfg, batch=1)
    K, V = debug_cfg.n_codebooks, debug_cfg.codebook_size + 2
    rows = []
    while not sampler.finished()[0]:
        logits = torch.zeros(1, K, V)
        logits[..., EOA_ID] = 50.0  # the model "wants" to stop at once; constraints must hold
        logits[..., AUDIO_PAD_ID] = 60.0
        rows.append(sampler.sample(logits)[0])
    delayed = torch.stack(rows).T  # [K, steps]
    assert sampler.forced_end_B.tolist() == [True] and sampler.eos_frame_B.tolist() == [6]
    for j in range(K):
        col = delayed[j]
        assert (col[:j] < 1024).all()  # forced: the prompt's silence continues before codebook j starts
        assert ((col[j : j + 6] >= 0) & (col[j : j + 6] < 1024)).all()
        assert col[j + 6] == EOA_ID
        assert (col[j + 7 :] == AUDIO_PAD_ID).all()
    assert delayed.shape[1] == 6 + K + 1  # ZONOS2's n_codebooks + 1 countdown


def test_streaming_chunks_equal_one_shot_generation(debug_model):
    prompt = build_prompt("stream me")
    spk = torch.randn(debug_model.cfg.speaker_embedding_dim)
    cfg = SamplingConfig(max_frames=25, seed=11)
    whole = generate(debug_model, prompt, spk, cfg).codes_KT
    decoder = Decoder(
        debug_model, SamplingConfig(max_frames=25, seed=11, chunk_frames=8), max_prompt_len=prompt.shape[0]
    )
    chunks = [c for _, c in decoder.stream([prompt], [spk])]
    assert [c.shape[1] for c in chunks][:-1] == [8] * (len(chunks) - 1)
    assert torch.equal(torch.cat(chunks, dim=1), whole)


def test_per_codebook_greedy_temperature(debug_model):
    prompt = build_prompt("greedy")
    temps = [0.0] * 9
    a = generate(debug_model, prompt, None, SamplingConfig(max_frames=8, seed=1, temperature=temps)).codes_KT
    b = generate(debug_model, prompt, None, SamplingConfig(max_frames=8, seed=2, temperature=temps)).codes_KT
    assert torch.equal(a, b)


def test_natural_end_on_eoa_sets_eos_frame(debug_cfg):
    sampler = RowSampler(debug_cfg, SamplingConfig(max_frames=50, seed=0, temperature=0.0), batch=1)
    K, V = debug_cfg.n_codebooks, debug_cfg.codebook_size + 2
    rows = []
    while not sampler.finished()[0]:
        logits = torch.zeros(1, K, V)
        logits[..., 7] = 1.0  # code 7 everywhere ...
        if int(sampler.step) == 4:
            logits[0, 0, EOA_ID] = 5.0  # ... until codebook 0 says stop at frame 4
        rows.append(sampler.sample(logits)[0])
    assert sampler.eos_frame_B.tolist() == [4] and sampler.forced_end_B.tolist() == [False]
    assert len(rows) == 4 + K + 1
    assert sampler.complete_frames().tolist() == [4]


def test_static_cache_rows_at_their_own_positions_equal_full_forwards(debug_model, debug_cfg):
    """Prompts of 5, 9 and 7 rows prefilled right-padded, then 4 rows each at its own position."""
    from accord.model.static_cache import StaticKVCache

    c, lengths, extra = debug_cfg, [5, 9, 7], 4
    B, P, span = len(lengths), max(lengths), 16
    ids = random_ids(c, B, P + extra)
    cache = StaticKVCache.empty(c.n_layers, B, c.n_kv_heads, 24, c.head_dim)
    cache.set_span(span)
    len_B = torch.tensor(lengths)
    s_S = torch.arange(span)
    with torch.no_grad():
        t_P1 = torch.arange(P).unsqueeze(1)
        mask = ((s_S <= t_P1) & (s_S < len_B.view(B, 1, 1))) | (s_S == t_P1)
        prefill = debug_model(
            ids[:, :P], positions_BT=t_P1.T.expand(B, P), cache=cache, mask_B1TS=mask[:, None]
        )
        cache.length.copy_(len_B)
        steps = []
        for i in range(extra):
            pos_B1 = (len_B + i).unsqueeze(1)
            row_B1C = ids[torch.arange(B), len_B + i].unsqueeze(1)
            mask_B11S = (s_S <= pos_B1).view(B, 1, 1, span)
            steps.append(
                debug_model(row_B1C, positions_BT=pos_B1, cache=cache, mask_B1TS=mask_B11S).logits_BTKV
            )
        for b, n in enumerate(lengths):
            full = debug_model(ids[b : b + 1, : n + extra]).logits_BTKV[0]
            got = torch.cat([prefill.logits_BTKV[b, :n], *(s[b] for s in steps)])
            torch.testing.assert_close(got, full, atol=1e-4, rtol=1e-4)
    assert cache.length.tolist() == [n + extra for n in lengths]


def test_static_cache_rejects_a_span_beyond_its_slots():
    from accord.model.static_cache import StaticKVCache

    cache = StaticKVCache.empty(1, 1, 1, 8, 4)
    with pytest.raises(ValueError, match="span"):
        cache.set_span(9)
    with pytest.raises(RuntimeError):  # writing past the last slot never wraps around silently
        cache.length.fill_(8)
        cache.update(0, torch.zeros(1, 1, 1, 4), torch.zeros(1, 1, 1, 4))
