"""The debug model memorises one clip's codes under teacher forcing (accuracy 1.0, lead-in cells
included), and greedy KV-cache generation from the clip's prompt, lead-in cells sampled freely
as ZONOS2 does, then reproduces exactly the clip's delayed rows and stops on EOA."""

from __future__ import annotations

import time

import pytest
import torch

from accord.model.config import get_flavour
from accord.model.decode import Decoder
from accord.model.sampling import SamplingConfig
from accord.model.sequence import PromptControls, audio_loss, build_prompt, build_sequence
from accord.model.zonos import ZonosModel

MAX_STEPS = 300
MAX_SECONDS = 60


@pytest.mark.slow  # ~10 s alone; minutes when the 2 cores are shared
def test_debug_model_memorises_one_clip():
    torch.manual_seed(0)
    model = ZonosModel(get_flavour("debug"))
    codes = torch.randint(0, 1024, (9, 64))  # ~0.75 s of audio
    controls = PromptControls(speaking_rate=14.0)
    seq = build_sequence(codes, "Memorise me.", controls)
    ids, mask = seq.ids_TC[None], seq.loss_mask_TK[None]
    spk = torch.randn(1, model.cfg.speaker_embedding_dim)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    t0, cpu0, acc, step = time.perf_counter(), time.process_time(), 0.0, 0
    first_loss = None
    for step in range(1, MAX_STEPS + 1):  # noqa: B007
        out = model(ids, speaker_NS=spk)
        loss, acc = audio_loss(out.logits_BTKV, ids, mask)
        first_loss = first_loss or loss.item()
        opt.zero_grad(set_to_none=True)
        (loss + out.balance_loss).backward()
        opt.step()
        if acc == 1.0:
            break
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print(
        f"\noverfit: accuracy {float(acc):.3f} after {step} steps, {wall:.1f}s wall / {cpu:.1f}s CPU, "
        f"loss {first_loss:.2f} -> {loss.item():.3f}"
    )
    assert acc == 1.0
    # CPU seconds, not wall: helpers share this machine and wall time swings with their load
    assert cpu < MAX_SECONDS
    with torch.no_grad():  # and it holds in eval mode on a fresh forward
        _, acc_eval = audio_loss(model.eval()(ids, speaker_NS=spk).logits_BTKV, ids, mask)
    assert acc_eval == 1.0
    prompt = build_prompt("Memorise me.", controls)
    assert torch.equal(prompt, seq.ids_TC[: seq.audio_start])  # trainer and generator agree
    # greedy with the repetition penalty off: a memorised clip repeats its codes, and the release's
    # default penalty (1.2 over 50 rows) exists to move a decode away from exactly that
    greedy = SamplingConfig(temperature=0.0, repetition_penalty=1.0, max_frames=200)
    decoder = Decoder(model, greedy, max_prompt_len=prompt.shape[0])
    res = decoder.generate([prompt], [spk[0]])[0]
    assert res.ended and torch.equal(res.codes_KT, codes)
    # the free lead-in cells are the silence continuation it learned; every row is the clip's
    audio_NK = seq.ids_TC[seq.audio_start :, :9]
    assert torch.equal(decoder.rows_BNK[0, : audio_NK.shape[0]], audio_NK)
