"""Property tests of the ZONOS2 delay pattern (apply/invert round trip, pad and eoa placement)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.core.delay import apply_delay, invert_delay
from accord.core.vocab import AUDIO_PAD_ID, CODEBOOK_SIZE, EOA_ID

codes = st.tuples(st.integers(1, 12), st.integers(0, 40), st.integers(0, 2**31 - 1)).map(
    lambda kts: torch.randint(0, CODEBOOK_SIZE, kts[:2], generator=torch.Generator().manual_seed(kts[2]))
)


@settings(max_examples=200, deadline=None)
@given(codes)
def test_invert_undoes_apply(codes_KT: torch.Tensor) -> None:
    delayed = apply_delay(codes_KT)
    assert delayed.shape == (codes_KT.shape[0], codes_KT.shape[1] + codes_KT.shape[0])
    assert torch.equal(invert_delay(delayed), codes_KT)


@settings(max_examples=200, deadline=None)
@given(codes)
def test_pad_and_eoa_placement(codes_KT: torch.Tensor) -> None:
    K, T = codes_KT.shape
    d = apply_delay(codes_KT)
    for j in range(K):
        row = d[j]
        assert (row[:j] == AUDIO_PAD_ID).all(), "codebook j starts after j pads"
        assert torch.equal(row[j : j + T], codes_KT[j]), "codes shifted by exactly j"
        assert row[j + T] == EOA_ID, "one end-of-audio right after the last code"
        assert (row[j + T + 1 :] == AUDIO_PAD_ID).all(), "pads after eoa"
        assert (row == EOA_ID).sum() == 1
    # column t holds codebook j's frame t - j: the diagonal structure the model predicts
    for t in range(T + K):
        for j in range(K):
            if 0 <= t - j < T:
                assert d[j, t] == codes_KT[j, t - j]


@given(st.integers(1, 9), st.integers(0, 8))
def test_invert_rejects_too_short(K: int, S: int) -> None:
    if S >= K:
        return
    try:
        invert_delay(torch.zeros(K, S, dtype=torch.long))
    except ValueError:
        return
    raise AssertionError("a delayed sequence shorter than K must be rejected")


def test_apply_rejects_wrong_rank() -> None:
    try:
        apply_delay(torch.zeros(3, dtype=torch.long))
    except ValueError:
        return
    raise AssertionError("1-D codes must be rejected")
