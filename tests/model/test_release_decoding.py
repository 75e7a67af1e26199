"""ZONOS2's decoding loop re-stated, against accord's decoder: the same codes, lead-in cells included.

The release (Zyphra/ZONOS2 @8fee419, ``python/zonos2``) decodes one request like this:
- each step the last row's logits ``[K, V]`` go to ``tts/sampler.py`` ``sample_tts``: greedy
  is ``torch.argmax`` over every id (l.171-173); otherwise temperature (l.176-177), top-k
  (l.180-186), softmax (l.188), top-p / min-p (l.190-198, off here) and ``torch.multinomial``
  on the ``[K, V]`` rows with the request's seeded generator (l.211-217). No cell is forced:
  codebook j's first j cells (its lead-in, before its first frame) are sampled like the rest;
- the row, text column ``text_vocab`` (l.250), joins the context (``scheduler/scheduler.py``
  l.270, ``core.py`` ``append_host`` l.139-142) and is fed at the next step;
- ``core.py`` ``check_eos`` (l.147-178): the first row holding an EOA sets
  ``eos_frame = max(0, step - highest EOA codebook)`` and a countdown of K + 1 steps;
- ``tokenizer/vocoder.py`` ``shear_up`` (l.29-47) undelays the rows; frames from ``eos_frame``
  on are dropped, so the lead-in cells never reach the audio.
Left out: the repetition penalty (on in its API's defaults, ``server/api_server.py``
l.1184-1186; accord has none) and min-p. Past the lead-in accord still applies its delay
rules (EOA and pad only where the delay pattern puts them), so the checkpoint here never
scores EOA or pad high enough to be chosen: its head rows for them are zero.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from accord.core.vocab import AUDIO_PAD_ID, EOA_ID
from accord.model.decode import Decoder
from accord.model.sampling import RowSampler, SamplingConfig
from accord.model.sequence import PromptControls, build_prompt
from accord.model.zonos import ZonosModel

STEPS = 64
TEXTS = ["hi", "a longer prompt with more text"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Steps of the debug model are tiny: a second thread only waits (much slower on a busy CPU)."""
    torch.set_num_threads(1)


@pytest.fixture
def model(debug_model: ZonosModel) -> ZonosModel:
    """The seeded debug checkpoint with attention that matters (so a changed lead-in cell changes
    later rows) and zero head rows for EOA and pad (never chosen: see the module docstring)."""
    cfg = debug_model.cfg
    with torch.no_grad():
        for layer in debug_model.layers:
            layer.attention.temp.fill_(4.0)
            layer.attention.wo.weight.mul_(30.0)
        head_KVD = debug_model.multi_output.weight.view(cfg.n_codebooks, cfg.audio_vocab, -1)
        head_KVD[:, [cfg.eoa_id, cfg.audio_pad_id]] = 0.0
    return debug_model


@torch.no_grad()
def release_decode(
    model: ZonosModel,
    prompt_PC: torch.Tensor,
    speaker_S: torch.Tensor | None,
    max_steps: int,
    temperature: float = 0.0,
    top_k: int = 0,
    seed: int = 0,
) -> tuple[torch.Tensor, int]:
    """The release's loop (module docstring), full forward per step: sampled rows ``[N, K]``
    and ``eos_frame`` (-1 if no EOA came within ``max_steps``)."""
    cfg = model.cfg
    K, V = cfg.n_codebooks, cfg.audio_vocab
    gen = torch.Generator().manual_seed(seed)
    spk = None if speaker_S is None else speaker_S.reshape(1, -1)
    pos = torch.zeros(1, 2, dtype=torch.long)  # the speaker slot is row 0
    ids_TC, rows = prompt_PC, []
    eos_frame, countdown = -1, -1
    for step in range(max_steps):
        logits_KV = model(ids_TC[None], speaker_NS=spk, speaker_pos_N2=pos).logits_BTKV[0, -1].float()
        if temperature <= 0:
            row_K = logits_KV.argmax(-1)
        else:
            logits_KV = logits_KV / max(temperature, 1e-6)
            if 0 < top_k < V:
                kth_K1 = logits_KV.topk(top_k, dim=-1).values[..., -1:]
                logits_KV = logits_KV.masked_fill(logits_KV < kth_K1, float("-inf"))
            probs_KV = torch.softmax(logits_KV, dim=-1)
            row_K = torch.multinomial(probs_KV, 1, generator=gen).view(K)
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


def accord_rows(
    model: ZonosModel, prompt_PC: torch.Tensor, speaker_S: torch.Tensor | None, sampling: SamplingConfig
) -> torch.Tensor:
    """The delayed rows ``[N, K]`` accord's static-cache decoder sampled, lead-in cells included."""
    decoder = Decoder(model, sampling, batch=1, max_prompt_len=prompt_PC.shape[0])
    res = decoder.generate([prompt_PC], [speaker_S])[0]
    return decoder.rows_BNK[0, : res.steps].cpu()


def speaker(model: ZonosModel) -> torch.Tensor:
    return torch.randn(model.cfg.speaker_embedding_dim, generator=torch.Generator().manual_seed(1))


def test_greedy_codes_equal_the_release_decoding(model):
    """64 steps, lead-in cells and everything after them; forcing the lead-in to the silence
    (accord's earlier rule) diverges in the lead-in and in later rows."""
    greedy = SamplingConfig(temperature=0.0, max_frames=STEPS)
    K = model.cfg.n_codebooks
    for text, spk in ((TEXTS[0], None), (TEXTS[1], speaker(model))):
        prompt = build_prompt(text, PromptControls(speaker=spk is not None))
        release, eos_frame = release_decode(model, prompt, spk, STEPS)
        assert eos_frame == -1 and (release < model.cfg.codebook_size).all()
        assert torch.equal(accord_rows(model, prompt, spk, greedy)[:STEPS], release)
    forced = accord_rows(model, prompt, spk, replace(greedy, lead_in="silence"))
    assert not torch.equal(forced[:K], release[:K])
    assert not torch.equal(forced[K:STEPS], release[K:])


def test_seeded_sampling_equals_the_release_sampling(model):
    """Temperature and top-k with one seed: accord's exponential race draws torch.multinomial's numbers."""
    prompt, spk = build_prompt(TEXTS[1], PromptControls(speaker=True)), speaker(model)
    release, _ = release_decode(model, prompt, spk, STEPS, temperature=1.0, top_k=50, seed=7)
    sampling = SamplingConfig(temperature=1.0, top_p=1.0, top_k=50, max_frames=STEPS, seed=7)
    assert torch.equal(accord_rows(model, prompt, spk, sampling)[:STEPS], release)


def test_lead_in_cells_take_any_id_and_an_eoa_there_ends_the_audio(debug_cfg):
    """The release samples lead-in cells over every id (pad and EOA too) and its ``check_eos``
    counts an EOA there: eos_frame = max(0, step - codebook), K + 1 steps to go."""
    K, V = debug_cfg.n_codebooks, debug_cfg.audio_vocab
    sampler = RowSampler(debug_cfg, SamplingConfig(temperature=0.0, max_frames=50), batch=1)
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
