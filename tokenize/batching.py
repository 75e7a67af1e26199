"""Length-bucketed batching of variable-length waveforms for the model forwards (DAC, ECAPA).

Sorting by length and capping the padded size of each batch keeps padding waste low and
memory bounded; both encoders batch the same way, so it lives here once.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


def length_batches(
    wavs: list[np.ndarray], max_samples: int
) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """Yield ``(indices, wav_BT, lengths_B)``: items sorted by length, zero-padded at the end,
    each batch's padded size ``B × T`` at most ``max_samples`` (a longer single item is alone)."""
    group: list[int] = []

    def batch() -> tuple[list[int], torch.Tensor, torch.Tensor]:
        longest = max(len(wavs[i]) for i in group)
        wav_BT = torch.zeros(len(group), longest)
        for b, i in enumerate(group):
            wav_BT[b, : len(wavs[i])] = torch.as_tensor(wavs[i], dtype=torch.float32)
        return list(group), wav_BT, torch.tensor([len(wavs[i]) for i in group])

    for i in sorted(range(len(wavs)), key=lambda i: len(wavs[i])):
        # Sorted ascending: the newest item is the longest, so it sets the padded width.
        if group and len(wavs[i]) * (len(group) + 1) > max_samples:
            yield batch()
            group.clear()
        group.append(i)
    if group:
        yield batch()
