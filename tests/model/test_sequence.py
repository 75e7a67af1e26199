from __future__ import annotations

import pytest
import torch

from accord.core.delay import apply_delay, invert_delay
from accord.core.vocab import (
    AUDIO_PAD_ID,
    BOS_ID,
    DEFAULT_VOCAB,
    EOA_ID,
    EOS_ID,
    N_SILENCE_FRAMES,
    SILENCE_FRAMES,
)
from accord.model.sequence import (
    PromptControls,
    audio_loss,
    build_prompt,
    build_sequence,
    pack,
    prompt_head,
    silence_codes,
)


def _codes(T=12, seed=0):
    return torch.randint(0, 1024, (9, T), generator=torch.Generator().manual_seed(seed))


def test_delay_round_trip_through_the_sequence():
    codes = _codes()
    assert torch.equal(invert_delay(apply_delay(codes)), codes)
    seq = build_sequence(codes, "hi")
    # the audio rows continue ZONOS2's silence: silence + codes, delayed
    audio = seq.ids_TC[seq.audio_start - N_SILENCE_FRAMES :, :9].T
    assert torch.equal(invert_delay(audio), torch.cat([silence_codes(), codes], dim=1))
    assert seq.n_frames == 12
    # codebook j's clip frame f sits at row audio_start + f + j; one EOA ends each codebook
    for j in range(9):
        col = seq.ids_TC[seq.audio_start :, j]
        assert torch.equal(col[j : j + 12], codes[j]) and col[j + 12] == EOA_ID
        assert (col[j + 13 :] == AUDIO_PAD_ID).all()


def test_sequence_layout_and_loss_mask():
    codes = _codes(T=5)
    controls = PromptControls(
        speaker=True, background="clean", accurate=True, speaking_rate=13.0, quality={"estimated_snr": 35.0}
    )
    seq = build_sequence(codes, "ab", controls)
    ids, mask = seq.ids_TC, seq.loss_mask_TK
    pad_text = DEFAULT_VOCAB.text_pad_id
    head_ids = prompt_head(controls)[1:]  # after the speaker slot
    head = 1 + len(head_ids) + 4
    assert seq.audio_start == head + N_SILENCE_FRAMES
    assert ids[0].tolist() == [AUDIO_PAD_ID] * 9 + [pad_text]  # speaker placeholder
    text_col = ids[1:head, 9].tolist()
    assert text_col == [*head_ids, BOS_ID, 192 + ord("a"), 192 + ord("b"), EOS_ID]
    assert (ids[1:head, :9] == AUDIO_PAD_ID).all()
    assert (ids[head:, 9] == pad_text).all()
    assert ids.shape == (seq.audio_start + 5 + 9, 10)
    # the generator's prompt is exactly the sequence's first audio_start rows
    assert torch.equal(build_prompt("ab", controls), ids[: seq.audio_start])
    # the last prompt row predicts codebook 0's first clip frame and codebook j's next silence
    # frame: codebook j's first j cells after the prompt (its lead-in) are targets too, as
    # ZONOS2 samples them at decode time
    assert mask[seq.audio_start - 1].all()
    assert not mask[: seq.audio_start - 1].any() and not mask[-1].any()
    # every clip code, EOA, lead-in silence code and tail pad (codebook j's 8 - j pads after
    # its EOA, which ZONOS2 also samples and feeds back) is a target exactly once; no other pad is
    assert int(mask.sum()) == 9 * (5 + 1) + sum(range(9)) + sum(range(9))
    targets = ids[1:, :9][mask[:-1]]
    assert int((targets == EOA_ID).sum()) == 9 and int((targets == AUDIO_PAD_ID).sum()) == sum(range(9))
    for j in range(9):
        target_j = ids[1:, j][mask[:-1, j]]
        assert target_j[:j].tolist() == [SILENCE_FRAMES[N_SILENCE_FRAMES - j + s][j] for s in range(j)]
        assert torch.equal(target_j[j : j + 5], codes[j])
        assert target_j[j + 5 :].tolist() == [EOA_ID] + [AUDIO_PAD_ID] * (8 - j)


def test_prompt_head_order_and_dropout():
    v = DEFAULT_VOCAB
    quality = {
        "max_pause": 0.7,
        "lufs": -20.0,
        "estimated_snr": float("nan"),
        "leading_silence_s": float("inf"),
    }
    ids = prompt_head(PromptControls(speaker=True, background="music", speaking_rate=9.0, quality=quality), v)
    assert ids == [v.text_pad_id, v.background_token("noisy"), v.rate_token(9.0),
                   v.quality_token("lufs", -20.0), v.quality_token("max_pause", 0.7)]  # fmt: skip
    # no speaker: no slot, and the background / accurate markers are dropped with it
    plain = PromptControls(background="clean", accurate=True, quality_buckets={"trailing_silence_s": 3})
    assert prompt_head(plain, v) == [v.quality_bucket_token("trailing_silence_s", 3)]
    assert prompt_head(PromptControls(), v) == []
    with pytest.raises(KeyError):
        prompt_head(PromptControls(quality={"snr_db": 3.0}), v)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="codes must lie"):
        build_sequence(torch.full((9, 3), 1024), "x")
    with pytest.raises(ValueError, match="at least one codec frame"):
        build_sequence(torch.zeros(9, 0, dtype=torch.long), "x")
    with pytest.raises(ValueError, match="outside the text vocabulary"):
        build_prompt([DEFAULT_VOCAB.size + 3])


def test_pack_places_whole_clips_and_speaker_rows():
    seqs = [build_sequence(_codes(T, seed=T), "x" * T) for T in (10, 4, 7)]
    lens = [s.ids_TC.shape[0] for s in seqs]
    batch = pack(seqs, max_len=lens[0] + lens[1])  # clips 0+1 share a row, clip 2 gets its own
    assert batch.ids_BTC.shape[0] == 2
    for (b, t), i in zip(batch.speaker_pos_N2.tolist(), batch.seq_index_N.tolist(), strict=True):
        n = lens[i]
        assert torch.equal(batch.ids_BTC[b, t : t + n], seqs[i].ids_TC)
        assert (batch.doc_ids_BT[b, t : t + n] == i).all()
    assert int(batch.loss_mask_BTK.sum()) == sum(int(s.loss_mask_TK.sum()) for s in seqs)


def test_audio_loss_is_zero_for_perfect_logits():
    seq = build_sequence(_codes(T=6), "ok")
    ids, mask = seq.ids_TC[None], seq.loss_mask_TK[None]
    logits = torch.full((1, ids.shape[1], 9, 1026), -15.0)
    logits[0, :-1].scatter_(-1, ids[0, 1:, :9, None], 15.0)
    loss, acc = audio_loss(logits, ids, mask)
    assert acc == 1.0 and loss < 1e-6
