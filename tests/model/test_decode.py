"""The static-cache decoder: same codes as recomputing the full forward per step, batched rows as if alone."""

from __future__ import annotations

import pytest
import torch

from accord.core.vocab import AUDIO_PAD_ID, EOA_ID, N_SILENCE_FRAMES, SILENCE_FRAMES
from accord.model.decode import DecodeConfig, Decoder, decode, undelay_rows
from accord.model.generate import SamplingConfig, generate
from accord.model.sampling import RowSampler
from accord.model.sequence import build_prompt

TEXTS = ["hi", "a longer prompt with more text", "x"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Steps of the debug model are tiny: a second thread only waits (much slower on a busy CPU)."""
    torch.set_num_threads(1)


@torch.no_grad()
def reference_generate(model, prompt_PC, speaker_S, cfg):
    """An independent decoder: no KV cache, the full causal forward over the prompt and every
    row sampled so far recomputed each step, the next row sampled on the host by a one-row
    ``RowSampler``. Returns the undelayed codes and the sampler (its end state)."""
    device = next(model.parameters()).device
    sampler = RowSampler(model.cfg, cfg, batch=1)
    spk = None if speaker_S is None else speaker_S.reshape(1, -1).to(device)
    pos = torch.zeros(1, 2, dtype=torch.long)
    ids_TC, rows = prompt_PC, []
    while not sampler.finished()[0]:
        out = model(ids_TC[None].to(device), speaker_NS=spk, speaker_pos_N2=pos)
        rows.append(sampler.sample(out.logits_BTKV[:, -1].cpu())[0])
        row_C = torch.cat([rows[-1], torch.tensor([model.cfg.text_pad_id])])
        ids_TC = torch.cat([ids_TC, row_C[None]])
    return undelay_rows(torch.stack(rows), 0, int(sampler.complete_frames()[0])), sampler


def sharpen(model):
    """Attention that matters (at random init its output is too small for positions or the cache
    to change a code) and a natural end for some prompts: EOA outscores code 701 when 701 leads."""
    with torch.no_grad():
        for layer in model.layers:
            layer.attention.temp.fill_(4.0)
            layer.attention.wo.weight.mul_(30.0)
        w = model.multi_output.weight
        w[EOA_ID] = 1.01 * w[701]
    return model


@pytest.fixture
def eoa_model(debug_model):
    return sharpen(debug_model)


def speakers(cfg, n: int) -> list[torch.Tensor | None]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(cfg.speaker_embedding_dim, generator=g) if i % 2 == 0 else None for i in range(n)]


@pytest.mark.parametrize(
    "sampling",
    [
        SamplingConfig(temperature=0.0, max_frames=14),
        SamplingConfig(temperature=1.0, top_p=0.9, top_k=50, max_frames=10, seed=7),
    ],
    ids=["greedy", "sampled"],
)
def test_batch1_equals_recomputing_the_full_forward_per_step(eoa_model, debug_cfg, sampling):
    """Greedy and seeded sampling: the draws are torch.multinomial's, so even samples agree."""
    for text, spk in zip(TEXTS[:2], speakers(debug_cfg, 2), strict=True):
        prompt = build_prompt(text)
        ref_codes, ref = reference_generate(eoa_model, prompt, spk, sampling)
        res = generate(eoa_model, prompt, spk, sampling)
        assert torch.equal(res.codes_KT, ref_codes)
        assert (res.steps, res.ended) == (int(ref.steps_B[0]), not ref.forced_end_B[0])


def test_batched_rows_equal_each_prompt_alone_and_end_independently(eoa_model, debug_cfg):
    sampling = SamplingConfig(temperature=0.0, max_frames=14)
    prompts = [build_prompt(t) for t in TEXTS]
    spks = speakers(debug_cfg, len(prompts))
    alone = [generate(eoa_model, p, s, sampling) for p, s in zip(prompts, spks, strict=True)]
    assert len({r.codes_KT.shape[1] for r in alone}) > 1  # the rows really end at different frames
    assert any(r.ended for r in alone) and not all(r.ended for r in alone)
    decoder = Decoder(
        eoa_model, sampling, batch=4, max_prompt_len=64, cfg=DecodeConfig(sync_every=5, kv_bucket=16)
    )
    # a decoder is reusable: every call starts clean, with fewer prompts than rows too
    for first in (0, 0, 1):
        batched = decoder.generate(prompts[first:], spks[first:])
        for a, b in zip(alone[first:], batched, strict=True):
            assert torch.equal(a.codes_KT, b.codes_KT)
            assert (a.steps, a.ended) == (b.steps, b.ended)
        assert int(decoder.sampler.step) == max(r.steps for r in batched)  # no step after the last end


def test_sampled_decoding_is_reproducible_with_a_seed(debug_model):
    prompts = [build_prompt(t) for t in TEXTS]

    def run(seed: int) -> list[torch.Tensor]:
        sampling = SamplingConfig(temperature=1.0, top_p=0.95, max_frames=8, seed=seed)
        return [r.codes_KT for r in decode(debug_model, prompts, None, sampling)]

    a, b, c = run(3), run(3), run(4)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_stream_chunks_concatenate_to_the_full_result(eoa_model, debug_cfg):
    prompts = [build_prompt(t) for t in TEXTS]
    spks = speakers(debug_cfg, len(prompts))
    whole = decode(eoa_model, prompts, spks, SamplingConfig(temperature=0.0, max_frames=14))
    sampling = SamplingConfig(temperature=0.0, max_frames=14, chunk_frames=3)
    chunks: list[list[torch.Tensor]] = [[] for _ in prompts]
    decoder = Decoder(eoa_model, sampling, batch=3, max_prompt_len=64, cfg=DecodeConfig(sync_every=4))
    for b, chunk in decoder.stream(prompts, spks):
        chunks[b].append(chunk)
    for row, res in zip(chunks, whole, strict=True):
        sizes = [c.shape[1] for c in row]
        assert sizes[:-1] == [3] * (len(sizes) - 1) and 1 <= sizes[-1] <= 3
        assert torch.equal(torch.cat(row, 1), res.codes_KT)


def test_stream_leaves_the_end_state_in_the_sampler(eoa_model):
    sampling = SamplingConfig(temperature=0.0, max_frames=14)
    prompt = build_prompt(TEXTS[0])
    decoder = Decoder(eoa_model, sampling, batch=1, max_prompt_len=prompt.shape[0])
    codes = torch.cat([c for _, c in decoder.stream([prompt], [None])], 1)
    s = decoder.sampler
    assert s.finished().tolist() == [True] and s.forced_end_B.tolist() == [False]
    assert int(s.eos_frame_B[0]) == codes.shape[1] == int(s.complete_frames()[0]) < 14
    assert int(s.steps_B[0]) == codes.shape[1] + eoa_model.cfg.n_codebooks + 1


def test_rows_end_independently_under_the_delay_rules(debug_cfg):
    """Row 0 stops at frame 5, row 1 is forced to stop at max_frames, row 2 as soon as min_frames allows."""
    K, V, B = debug_cfg.n_codebooks, debug_cfg.audio_vocab, 3
    sampling = SamplingConfig(
        temperature=0.0, max_frames=7, min_frames=4, lead_in="silence", rules="delay", repetition_penalty=1.0
    )
    sampler = RowSampler(debug_cfg, sampling, B)
    rows = []
    for s in range(7 + K + 1):
        logits = torch.zeros(B, K, V)
        logits[:, :, 5] = 1.0
        logits[:, :, AUDIO_PAD_ID] = 9.0  # never sampled: pads are forced, not chosen
        logits[:, 1:, EOA_ID] = 9.0  # codebooks j > 0 never choose EOA themselves
        logits[0, 0, EOA_ID] = 9.0 if s == 5 else -9.0
        logits[2, 0, EOA_ID] = 9.0  # wants to stop at once; masked until min_frames
        rows.append(sampler.sample(logits))
    delayed_BKS = torch.stack(rows, -1)
    ends = {0: 5, 1: 7, 2: 4}
    assert sampler.eos_frame_B.tolist() == [5, 7, 4]
    assert sampler.forced_end_B.tolist() == [False, True, False]
    assert sampler.steps_B.tolist() == [e + K + 1 for e in ends.values()]
    assert sampler.finished().all() and sampler.complete_frames().tolist() == [5, 7, 4]
    for b, end in ends.items():
        for j in range(K):
            col = delayed_BKS[b, j]
            # forced lead-in: before its start, codebook j continues the prompt's delayed silence
            assert col[:j].tolist() == [SILENCE_FRAMES[N_SILENCE_FRAMES - j + s][j] for s in range(j)]
            assert (col[j : j + end] == 5).all()
            assert col[j + end] == EOA_ID  # every codebook ends on the same frame
            assert (col[j + end + 1 :] == AUDIO_PAD_ID).all()  # also after the row finished


def test_draws_are_torch_multinomial_draws(debug_cfg):
    K, V = debug_cfg.n_codebooks, debug_cfg.audio_vocab
    sampler = RowSampler(
        debug_cfg,
        SamplingConfig(
            temperature=0.7,
            top_k=0,
            min_p=0.0,
            repetition_penalty=1.0,
            max_frames=50,
            min_frames=50,
            seed=5,
            rules="delay",
        ),
        2,
    )
    for _ in range(K):  # past the delay start: every codebook samples freely
        sampler.sample(torch.zeros(2, K, V))
    logits = torch.randn(2, K, V, generator=torch.Generator().manual_seed(0))
    probs = torch.softmax(
        logits.masked_fill(torch.arange(V) >= debug_cfg.codebook_size, float("-inf")) / 0.7, -1
    )
    gen = torch.Generator().manual_seed(5)
    for _ in range(K):
        torch.empty(2, K, V).exponential_(generator=gen)  # the draws of the first K steps
    expected = torch.multinomial(probs.flatten(0, 1), 1, generator=gen).view(2, K)
    assert torch.equal(sampler.sample(logits), expected)


def test_bad_input_is_rejected(debug_model):
    decoder = Decoder(debug_model, SamplingConfig(max_frames=4), batch=2, max_prompt_len=30)
    p = build_prompt("hi")  # 21 rows: BOS, 2 bytes, EOS + 17 silence
    with pytest.raises(ValueError, match="prompts"):
        decoder.generate([p, p, p])
    with pytest.raises(ValueError, match="prompt 0"):
        decoder.generate([build_prompt("much too long for thirty rows")])
    with pytest.raises(ValueError, match="prompt 1"):
        decoder.generate([p, p[:, :-1]])
    with pytest.raises(ValueError, match="speakers"):
        decoder.generate([p], [None, None])
    with pytest.raises(ValueError, match="min_frames"):
        Decoder(debug_model, SamplingConfig(max_frames=4, min_frames=5))
    with pytest.raises(ValueError, match="sync_every"):
        Decoder(debug_model, SamplingConfig(max_frames=4), cfg=DecodeConfig(sync_every=0))


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def capturable(dtype: torch.dtype) -> bool:
    """A decode step has no host sync only with the grouped MoE kernel: sm90+ in bf16."""
    return dtype == torch.bfloat16 and torch.cuda.get_device_capability() >= (9, 0)


@pytest.mark.gpu
@needs_cuda
def test_cuda_graph_decoding_equals_eager_decoding_in_bf16(eoa_model, debug_cfg):
    """Same kernels, replayed: identical codes, greedy and sampled (the graph advances the RNG)."""
    if not capturable(torch.bfloat16):
        pytest.skip("the MoE step syncs with the host below sm90: decoding stays eager")
    model = eoa_model.to(device="cuda", dtype=torch.bfloat16)
    prompts = [build_prompt(t) for t in TEXTS]
    spks = speakers(debug_cfg, len(prompts))
    for sampling in (
        SamplingConfig(temperature=0.0, max_frames=14),
        SamplingConfig(temperature=0.8, top_p=0.9, top_k=100, max_frames=14, seed=3),
    ):
        decoders = [
            Decoder(
                model, sampling, batch=4, max_prompt_len=64, cfg=DecodeConfig(cuda_graphs=g, kv_bucket=16)
            )
            for g in (True, False)
        ]
        assert [d.graphed for d in decoders] == [True, False]
        for _ in range(2):  # a reseeded replay repeats the first run
            graphed, eager = (d.generate(prompts, spks) for d in decoders)
            for g, e in zip(graphed, eager, strict=True):
                assert torch.equal(g.codes_KT, e.codes_KT)
                assert (g.steps, g.ended) == (e.steps, e.ended)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize(
    ("dtype", "sharp"),
    [(torch.float32, True), (torch.bfloat16, False)],
    ids=["fp32-sharp-attention", "bf16"],
)
def test_cuda_greedy_decoding_equals_recomputing_the_full_forward(debug_model, debug_cfg, dtype, sharp):
    """Graphs and the static cache on CUDA give the greedy codes of the full forward per step.

    The two decoders run different attention kernels (masked span vs plain causal), so
    bf16 rounding differs slightly; with attention amplified (``sharpen``) a near tie among
    1024 codes could flip, so the sensitive model runs in fp32 and bf16 uses the plain one.
    """
    model = (sharpen(debug_model) if sharp else debug_model).to(device="cuda", dtype=dtype)
    greedy = SamplingConfig(temperature=0.0, max_frames=14)
    for text, spk in zip(TEXTS, speakers(debug_cfg, len(TEXTS)), strict=True):
        prompt = build_prompt(text)
        ref_codes, ref = reference_generate(model, prompt, spk, greedy)
        decoder = Decoder(model, greedy, batch=1, max_prompt_len=prompt.shape[0])
        assert decoder.graphed or not capturable(dtype)  # else the eager fallback runs the same step
        res = decoder.generate([prompt], [spk])[0]
        assert torch.equal(res.codes_KT, ref_codes)
        assert (res.steps, res.ended) == (int(ref.steps_B[0]), not ref.forced_end_B[0])


def test_a_forced_pad_lead_in_is_audio_pad(debug_cfg):
    K, V = debug_cfg.n_codebooks, debug_cfg.audio_vocab
    sampler = RowSampler(debug_cfg, SamplingConfig(temperature=0.0, max_frames=50, lead_in="pad"), 1)
    rows = torch.stack([sampler.sample(torch.zeros(1, K, V)) for _ in range(K)], -1)[0]
    for j in range(K):
        assert (rows[j, :j] == AUDIO_PAD_ID).all() and (rows[j, j:] < debug_cfg.codebook_size).all()
