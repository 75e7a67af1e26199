"""Length-bucketed batching: every item exactly once, padding bounded, lengths right."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.tokenize.batching import length_batches


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=400), min_size=0, max_size=30), st.integers(50, 1000))
def test_every_item_once_and_batches_bounded(lengths: list[int], max_samples: int) -> None:
    wavs = [np.full(n, i + 1, np.float32) for i, n in enumerate(lengths)]
    seen: list[int] = []
    for idx, wav_BT, lengths_B in length_batches(wavs, max_samples):
        seen.extend(idx)
        assert wav_BT.shape[0] == len(idx) == len(lengths_B)
        assert len(idx) == 1 or wav_BT.numel() <= max_samples
        for b, i in enumerate(idx):
            n = len(wavs[i])
            assert int(lengths_B[b]) == n
            assert (wav_BT[b, :n] == i + 1).all() and (wav_BT[b, n:] == 0).all()
    assert sorted(seen) == list(range(len(wavs)))
