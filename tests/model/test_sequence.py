from __future__ import annotations

import pytest
import torch

from accord.core.delay import apply_delay, invert_delay
from accord.core.vocab import AUDIO_PAD_ID, BOS_ID, DEFAULT_VOCAB, EOA_ID, EOS_ID
from accord.model.sequence import audio_loss, build_prompt, build_sequence, control_tokens, pack


def _codes(T=12, seed=0):
    return torch.randint(0, 1024, (9, T), generator=torch.Generator().manual_seed(seed))


def test_delay_round_trip_through_the_sequence():
    codes = _codes()
    assert torch.equal(invert_delay(apply_delay(codes)), codes)
    seq = build_sequence(codes, "hi")
    audio = seq.ids_TC[seq.audio_start :, :9].T
    assert torch.equal(invert_delay(audio), codes)
    # codebook j starts j rows late and ends with exactly one EOA
    for j in range(9):
        col = audio[j]
        assert (col[:j] == AUDIO_PAD_ID).all() and col[j + 12] == EOA_ID
        assert (col[j + 13 :] == AUDIO_PAD_ID).all()


def test_sequence_layout_and_loss_mask():
    codes = _codes(T=5)
    controls = control_tokens(speaking_rate=13.0, quality={"snr_db": 35.0}, quality_mode=True)
    seq = build_sequence(codes, "ab", controls)
    ids, mask = seq.ids_TC, seq.loss_mask_TK
    pad_text = DEFAULT_VOCAB.text_pad_id
    assert ids[0].tolist() == [AUDIO_PAD_ID] * 9 + [pad_text]  # speaker placeholder
    text_col = ids[1 : seq.audio_start, 9].tolist()
    assert text_col == [*controls, BOS_ID, 192 + ord("a"), 192 + ord("b"), EOS_ID]
    assert (ids[1 : seq.audio_start, :9] == AUDIO_PAD_ID).all()
    assert (ids[seq.audio_start :, 9] == pad_text).all()
    assert ids.shape == (seq.audio_start + 5 + 9, 10)
    # the last text row predicts the first audio row's codebook 0 only
    assert mask[seq.audio_start - 1].tolist() == [True] + [False] * 8
    assert not mask[: seq.audio_start - 1].any() and not mask[-1].any()
    # every real code and every EOA is a target exactly once
    assert int(mask.sum()) == 9 * (5 + 1)
    targets = ids[1:, :9][mask[:-1]]
    assert int((targets == EOA_ID).sum()) == 9 and not (targets == AUDIO_PAD_ID).any()


def test_control_tokens_order_and_dropout():
    v = DEFAULT_VOCAB
    ids = control_tokens(
        v, speaking_rate=9.0, quality={"agreement": 0.9, "snr_db": float("nan")}, background="music"
    )
    assert ids == [v.rate_token(9.0), v.quality_token("agreement", 0.9), v.background_token("noisy")]
    assert control_tokens(v) == []


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
