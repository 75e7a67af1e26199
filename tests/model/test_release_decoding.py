"""ZONOS2's decoding loop re-stated, against accord's decoder: the same codes, every cell.

The release (Zyphra/ZONOS2 @8fee419, ``python/zonos2``) decodes one request like this:
- ``engine/sample.py`` ``TTSSampler.prepare`` (l.48-130): temperature floored at 1e-6, top-k
  < 1 read as the codebook size, and the repetition history: the codes of the last
  ``min(window, generated)`` sampled rows, codebooks past ``repetition_codebooks`` and ids
  >= the codebook size left out;
- ``tts/sampler.py`` ``sample_tts`` (l.107-250) on the last row's logits ``[K, V]``: the
  repetition penalty (``apply_repetition_penalty`` l.39-63), then argmax when every
  temperature is <= 0 (l.171-173), else temperature, top-k, softmax, top-p (l.15-25), min-p
  (l.28-36), greedy for a row left empty (l.200-209) and ``torch.multinomial`` with the
  request's seeded generator (l.211-217). No cell is forced: every id, every codebook;
- the row, text column ``text_vocab`` (l.250), joins the context (``scheduler/scheduler.py``
  l.270, ``core.py`` ``append_host`` l.139-142) and is fed at the next step;
- ``core.py`` ``check_eos`` (l.147-178): the first row holding an EOA sets
  ``eos_frame = max(0, step - highest EOA codebook)`` and a countdown of K + 1 steps;
- ``tokenizer/vocoder.py`` ``shear_up`` (l.29-47) undelays the rows; frames from ``eos_frame``
  on are dropped and ``decode_dac`` clamps the rest to <= 1023 (l.61).
Greedy here is the argmax: the release floors a temperature of 0 at 1e-6 and draws, which picks
the argmax unless two logits lie within ~1e-4 (none do in these checkpoints).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from accord.core.vocab import AUDIO_PAD_ID, EOA_ID
from accord.model.decode import Decoder, undelay_rows
from accord.model.sampling import RowSampler, SamplingConfig, audio_codes
from accord.model.sequence import PromptControls, build_prompt
from accord.model.zonos import ZonosModel

STEPS = 64
TEXTS = ["hi", "a longer prompt with more text"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Steps of the debug model are tiny: a second thread only waits (much slower on a busy CPU)."""
    torch.set_num_threads(1)


def sharpen(model: ZonosModel) -> ZonosModel:
    """Attention that matters, so a changed cell changes later rows."""
    with torch.no_grad():
        for layer in model.layers:
            layer.attention.temp.fill_(4.0)
            layer.attention.wo.weight.mul_(30.0)
    return model


@pytest.fixture
def model(debug_model: ZonosModel) -> ZonosModel:
    """The seeded debug checkpoint, sharpened, EOA and pad never scored high (a long decode)."""
    cfg = sharpen(debug_model).cfg
    with torch.no_grad():
        head_KVD = debug_model.multi_output.weight.view(cfg.n_codebooks, cfg.audio_vocab, -1)
        head_KVD[:, [cfg.eoa_id, cfg.audio_pad_id]] = 0.0
    return debug_model


@pytest.fixture
def special_model(debug_model: ZonosModel) -> ZonosModel:
    """A checkpoint that scores EOA and pad inside the audio: codebook 4's EOA row and codebook
    2's pad row copy a code's row, scaled, so they win wherever that code would."""
    cfg = sharpen(debug_model).cfg
    with torch.no_grad():
        head_KVD = debug_model.multi_output.weight.view(cfg.n_codebooks, cfg.audio_vocab, -1)
        head_KVD[2, cfg.audio_pad_id] = 1.3 * head_KVD[2, 835]
        head_KVD[4, cfg.eoa_id] = 1.6 * head_KVD[4, 901]
    return debug_model


def release_sample(
    logits_KV: torch.Tensor,
    recent_KW: torch.Tensor,
    p: SamplingConfig,
    codebook_size: int,
    gen: torch.Generator,
) -> torch.Tensor:
    """``sample_tts`` for one request (B = 1), as written in the release."""
    K, V = logits_KV.shape
    if recent_KW.numel() and p.repetition_penalty > 1.0:
        valid = (recent_KW >= 0) & (recent_KW < V)
        counts = torch.zeros((K, V), dtype=torch.int32)
        counts.scatter_add_(-1, recent_KW.clamp(min=0, max=V - 1), valid.to(torch.int32))
        penalty = max(p.repetition_penalty, 1.0)
        adjusted = torch.where(logits_KV > 0, logits_KV / penalty, logits_KV * penalty)
        logits_KV = torch.where(counts > 0, adjusted, logits_KV)
    if p.temperature <= 0:
        return torch.argmax(logits_KV, dim=-1)
    logits_KV = logits_KV / max(p.temperature, 1e-6)
    top_k = p.top_k if p.top_k >= 1 else codebook_size
    if 0 < top_k < V:
        kth = torch.topk(logits_KV, top_k, dim=-1).values[..., -1].unsqueeze(-1)
        logits_KV = logits_KV.masked_fill(logits_KV < kth, float("-inf"))
    probs = torch.softmax(logits_KV, dim=-1)
    if 0.0 < p.top_p < 1.0:
        probs_sort, probs_idx = torch.sort(probs, dim=-1, descending=True)
        mask = torch.cumsum(probs_sort, dim=-1) - probs_sort > p.top_p
        probs = probs.scatter(-1, probs_idx, probs_sort.masked_fill(mask, 0.0))
        probs = probs / probs.sum(dim=-1, keepdim=True).clamp(min=1e-8)
    if p.min_p > 0.0:
        probs = probs.masked_fill(probs < p.min_p * probs.max(dim=-1, keepdim=True).values, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True).clamp(min=1e-8)
    invalid = probs.sum(dim=-1) <= 0
    if bool(invalid.any()):
        fallback = torch.zeros_like(probs).scatter_(-1, logits_KV.argmax(-1, keepdim=True), 1.0)
        probs = torch.where(invalid.unsqueeze(-1), fallback, probs)
    return torch.multinomial(probs, num_samples=1, generator=gen).view(K)


@torch.no_grad()
def release_decode(
    model: ZonosModel,
    prompt_PC: torch.Tensor,
    speaker_S: torch.Tensor | None,
    p: SamplingConfig,
    max_steps: int,
) -> tuple[torch.Tensor, int]:
    """The release's loop (module docstring), full forward per step: sampled rows ``[N, K]``
    and ``eos_frame`` (-1 if no EOA came within ``max_steps``)."""
    cfg = model.cfg
    K = cfg.n_codebooks
    gen = torch.Generator().manual_seed(p.seed or 0)
    spk = None if speaker_S is None else speaker_S.reshape(1, -1)
    pos = torch.zeros(1, 2, dtype=torch.long)  # the speaker slot is row 0
    n_pen = K if p.repetition_codebooks < 0 else min(p.repetition_codebooks, K)
    ids_TC, rows = prompt_PC, []
    eos_frame, countdown = -1, -1
    for step in range(max_steps):
        window = min(p.repetition_window, step) if p.repetition_penalty > 1.0 and n_pen > 0 else 0
        history_KW = (
            torch.stack(rows[step - window :], dim=1) if window else torch.empty(K, 0, dtype=torch.long)
        )
        history_KW = torch.where((history_KW >= 0) & (history_KW < cfg.codebook_size), history_KW, -1)
        history_KW[n_pen:] = -1
        logits_KV = model(ids_TC[None], speaker_NS=spk, speaker_pos_N2=pos).logits_BTKV[0, -1].float()
        row_K = release_sample(logits_KV, history_KW, p, cfg.codebook_size, gen)
        rows.append(row_K)
        ids_TC = torch.cat([ids_TC, torch.cat([row_K, torch.tensor([cfg.text_vocab])])[None]])
        eoa_K = row_K == cfg.eoa_id
        if eos_frame < 0 and bool(eoa_K.any()):
            eos_frame, countdown = max(0, step - int(eoa_K.nonzero().max())), K + 1
        if countdown > 0:
            countdown -= 1
            if countdown == 0:
                break
    return torch.stack(rows), eos_frame


def accord_decode(
    model: ZonosModel, prompt_PC: torch.Tensor, speaker_S: torch.Tensor | None, sampling: SamplingConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """The delayed rows ``[N, K]`` accord's static-cache decoder sampled (lead-in cells and the
    countdown included) and the undelayed codes it returned."""
    decoder = Decoder(model, sampling, batch=1, max_prompt_len=prompt_PC.shape[0])
    res = decoder.generate([prompt_PC], [speaker_S])[0]
    return decoder.rows_BNK[0, : res.steps].cpu(), res.codes_KT


def speaker(model: ZonosModel) -> torch.Tensor:
    return torch.randn(model.cfg.speaker_embedding_dim, generator=torch.Generator().manual_seed(1))


def test_defaults_are_the_release_request_defaults():
    """``core.py`` ``TTSSamplingParams`` l.55-67 and ``server/api_server.py`` l.1174-1186."""
    d = SamplingConfig()
    release = dict(temperature=1.15, top_k=106, top_p=0.0, min_p=0.18, repetition_window=50)
    assert {k: getattr(d, k) for k in release} == release
    assert (d.repetition_penalty, d.repetition_codebooks, d.rules) == (1.2, 8, "release")


def test_greedy_codes_equal_the_release_decoding(model):
    """64 steps with the release's default repetition penalty: lead-in cells and every later
    cell; accord's earlier rules (forced lead-in) diverge in the lead-in and in later rows."""
    greedy = SamplingConfig(temperature=0.0, max_frames=STEPS)
    K = model.cfg.n_codebooks
    for text, spk in ((TEXTS[0], None), (TEXTS[1], speaker(model))):
        prompt = build_prompt(text, PromptControls(speaker=spk is not None))
        release, eos_frame = release_decode(model, prompt, spk, greedy, STEPS)
        assert eos_frame == -1 and (release < model.cfg.codebook_size).all()
        assert torch.equal(accord_decode(model, prompt, spk, greedy)[0][:STEPS], release)
    unpenalized, _ = release_decode(model, prompt, spk, replace(greedy, repetition_penalty=1.0), STEPS)
    assert not torch.equal(unpenalized, release)  # the penalty changes codes here
    forced, _ = accord_decode(model, prompt, spk, replace(greedy, lead_in="silence"))
    assert not torch.equal(forced[:K], release[:K])
    assert not torch.equal(forced[K:STEPS], release[K:])


@pytest.mark.parametrize(
    "overrides",
    [{}, {"top_p": 0.8, "min_p": 0.0}, {"temperature": 1.0, "top_k": 0, "repetition_codebooks": -1}],
    ids=["release-defaults", "top-p", "all-codebooks-penalized"],
)
def test_seeded_sampling_equals_the_release_sampling(model, overrides):
    """One seed: accord's exponential race draws torch.multinomial's numbers after the same filters."""
    prompt, spk = build_prompt(TEXTS[1], PromptControls(speaker=True)), speaker(model)
    sampling = replace(SamplingConfig(max_frames=STEPS, seed=7), **overrides)
    release, _ = release_decode(model, prompt, spk, sampling, STEPS)
    assert torch.equal(accord_decode(model, prompt, spk, sampling)[0][:STEPS], release)


def test_eoa_and_pad_anywhere_are_decoded_as_the_release(special_model):
    """A checkpoint that picks pad and EOA past the lead-in: the same rows, the same end and
    audio codes clamped as the release's vocoder; accord's delay rules would have refused both."""
    m = special_model
    prompt = build_prompt(TEXTS[1], PromptControls())
    greedy = SamplingConfig(temperature=0.0, max_frames=200)
    release, eos_frame = release_decode(m, prompt, None, greedy, 200)
    assert eos_frame > 0 and bool((release[:, 2] == AUDIO_PAD_ID).any())
    rows, codes_KT = accord_decode(m, prompt, None, greedy)
    assert torch.equal(rows, release)
    assert codes_KT.shape[1] == eos_frame
    expected = undelay_rows(release, 0, eos_frame)
    assert torch.equal(codes_KT, expected) and bool((expected >= m.cfg.codebook_size).any())
    assert torch.equal(audio_codes(codes_KT, m.cfg.codebook_size), expected.clamp(max=1023))
    delay_rows, _ = accord_decode(m, prompt, None, replace(greedy, rules="delay"))
    K = m.cfg.n_codebooks
    past_lead_in = torch.arange(delay_rows.shape[0])[:, None] >= torch.arange(K)
    ended = (delay_rows == EOA_ID).cumsum(0) > 0
    assert not ((delay_rows == AUDIO_PAD_ID) & past_lead_in & ~ended).any()


def test_lead_in_cells_take_any_id_and_an_eoa_there_ends_the_audio(debug_cfg):
    """The release samples lead-in cells over every id (pad and EOA too) and its ``check_eos``
    counts an EOA there: eos_frame = max(0, step - codebook), K + 1 steps to go."""
    K, V = debug_cfg.n_codebooks, debug_cfg.audio_vocab
    for rules in ("release", "delay"):
        cfg = SamplingConfig(temperature=0.0, max_frames=50, repetition_penalty=1.0, rules=rules)
        sampler = RowSampler(debug_cfg, cfg, batch=1)
        logits = torch.zeros(1, K, V)
        logits[:, :, 7] = 1.0
        logits[:, 3, AUDIO_PAD_ID] = 2.0  # codebook 3's lead-in picks pad
        first = sampler.sample(logits)[0]
        assert first.tolist() == [7, 7, 7, AUDIO_PAD_ID, 7, 7, 7, 7, 7]  # codebook 0 has no lead-in
        assert not sampler.finished()[0] and int(sampler.eos_frame_B[0]) == -1
        logits[:, 5, EOA_ID] = 3.0  # codebook 5's lead-in picks EOA at step 1
        assert int(sampler.sample(logits)[0, 5]) == EOA_ID
        assert int(sampler.eos_frame_B[0]) == 0 and int(sampler.countdown_B[0]) == K
        assert int(sampler.complete_frames()[0]) == 0  # nothing reaches the audio


def test_repetition_history_is_the_last_window_rows_of_penalized_codebooks(debug_cfg):
    """The ring holds the last W sampled audio codes of the first ``repetition_codebooks``
    codebooks (EOA and pad left out), as the release's history does."""
    K, V = debug_cfg.n_codebooks, debug_cfg.audio_vocab
    cfg = SamplingConfig(temperature=0.0, max_frames=50, repetition_window=3, repetition_codebooks=2)
    sampler = RowSampler(debug_cfg, cfg, batch=1)
    for code in (5, 6, 7, 8):
        logits = torch.zeros(1, K, V)
        logits[:, :, code] = 10.0
        sampler.sample(logits)
    assert sorted(sampler.recent_BKW[0, 0].tolist()) == [6, 7, 8]
    assert sorted(sampler.recent_BKW[0, 1].tolist()) == [6, 7, 8]
    assert (sampler.recent_BKW[0, 2:] == -1).all()
