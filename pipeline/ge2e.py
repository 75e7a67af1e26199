"""resemblyzer's GE2E speaker encoder (its ``VoiceEncoder`` and the features it was trained on),
re-stated without importing resemblyzer.

Importing ``resemblyzer`` imports librosa, and its mel spectrogram's first call imports numba:
~1.6 s of CPU in every speaker actor, for a 40-band mel spectrogram (issue #28). The weights are
still resemblyzer's ``pretrained.pt`` (``ge2e:resemblyzer``); the tests check the embeddings
against resemblyzer's own. Its own module, like :mod:`accord.pipeline.pyannet`: it imports torch,
which only the speaker pool's actor should pay for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from accord.pipeline.mel import power_mel

RATE = 16_000
N_MELS = 40  # resemblyzer's ``mel_n_channels``
MEL_WINDOW = 400  # 25 ms, resemblyzer's ``mel_window_length``
MEL_HOP = 160  # 10 ms, resemblyzer's ``mel_window_step``
HIDDEN = 256  # ``model_hidden_size`` and ``model_embedding_size``
LAYERS = 3


def mel_frames(x_T: np.ndarray) -> np.ndarray:
    """``[F, 40]`` float32 power mel frames of a 16 kHz clip: resemblyzer's
    ``wav_to_mel_spectrogram`` (librosa's defaults, n_fft 400, hop 160; not a log-mel)."""
    return power_mel(np.asarray(x_T).reshape(1, -1), RATE, MEL_WINDOW, MEL_HOP, N_MELS, np.float32)[0]


def normalize_volume(x_T: np.ndarray, target_dbfs: float, increase_only: bool = False) -> np.ndarray:
    """Scale to ``target_dbfs`` RMS (resemblyzer's ``normalize_volume``); with ``increase_only``
    a louder clip is returned as it is."""
    x = np.asarray(x_T)
    level = 10.0 * np.log10(np.mean(np.square(x, dtype=np.float64)))
    change = target_dbfs - level
    if increase_only and change < 0:
        return x
    return x * (10.0 ** (change / 20.0))


class Ge2eEncoder(torch.nn.Module):
    """Three LSTM layers over mel frames; the last layer's final state through a linear layer and
    a ReLU, L2-normed: one 256-d embedding per partial (resemblyzer's parameter names)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(N_MELS, HIDDEN, LAYERS, batch_first=True)
        self.linear = torch.nn.Linear(HIDDEN, HIDDEN)

    def forward(self, mels_NFC: torch.Tensor) -> torch.Tensor:
        _, (hidden_LND, _) = self.lstm(mels_NFC)
        raw_ND = torch.relu(self.linear(hidden_LND[-1]))
        return raw_ND / torch.norm(raw_ND, dim=1, keepdim=True)


def load_encoder(path: Path, device: str = "cpu") -> Ge2eEncoder:
    """The encoder with resemblyzer's trained weights (its ``pretrained.pt``: ``model_state``,
    whose GE2E loss scale ``similarity_weight`` / ``similarity_bias`` only training uses)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in ckpt["model_state"].items() if not k.startswith("similarity_")}
    model = Ge2eEncoder()
    model.load_state_dict(state, strict=True)
    return model.eval().to(device)
