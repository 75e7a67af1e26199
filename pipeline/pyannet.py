"""pyannote.audio's PyanNet, the segmentation-3.0 network, re-stated without pyannote.audio.

Its own module so that :mod:`accord.pipeline.speaker_consistency` (imported by every ingest
worker that unpickles the job's graph) does not import torch; the speaker pool's actor imports
this when it loads the model.
"""

from __future__ import annotations

import torch

from accord.pipeline.speaker_consistency import POWERSET_VOICES, SAMPLE_RATE


class PyanNet(torch.nn.Module):
    """pyannote.audio's PyanNet (SincNet, 4 BiLSTM layers, 2 linear, 7 powerset classes), the part
    segmentation-3.0 needs (MIT, CNRS), without importing pyannote.audio."""

    def __init__(self, sincnet_stride: int = 10, lstm_layers: int = 4, hidden: int = 128) -> None:
        super().__init__()
        from asteroid_filterbanks import Encoder, ParamSincFB

        self.sincnet = torch.nn.Module()
        self.sincnet.wav_norm1d = torch.nn.InstanceNorm1d(1, affine=True)
        self.sincnet.conv1d = torch.nn.ModuleList(
            [
                Encoder(
                    ParamSincFB(
                        80, 251, stride=sincnet_stride, sample_rate=SAMPLE_RATE, min_low_hz=50, min_band_hz=50
                    )
                ),
                torch.nn.Conv1d(80, 60, 5),
                torch.nn.Conv1d(60, 60, 5),
            ]
        )
        self.sincnet.pool1d = torch.nn.ModuleList([torch.nn.MaxPool1d(3, stride=3) for _ in range(3)])
        self.sincnet.norm1d = torch.nn.ModuleList(
            [torch.nn.InstanceNorm1d(n, affine=True) for n in (80, 60, 60)]
        )
        self.lstm = torch.nn.LSTM(60, hidden, num_layers=lstm_layers, bidirectional=True, batch_first=True)
        self.linear = torch.nn.ModuleList(
            [torch.nn.Linear(2 * hidden, hidden), torch.nn.Linear(hidden, hidden)]
        )
        self.classifier = torch.nn.Linear(hidden, len(POWERSET_VOICES))

    def forward(self, x_B1T: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the powerset classes, (B, frames, 7); frames every 16.875 ms."""
        h = self.sincnet.wav_norm1d(x_B1T)
        for i, (conv, pool, norm) in enumerate(
            zip(self.sincnet.conv1d, self.sincnet.pool1d, self.sincnet.norm1d, strict=True)
        ):
            h = conv(h)
            h = torch.nn.functional.leaky_relu(norm(pool(torch.abs(h) if i == 0 else h)))
        h, _ = self.lstm(h.transpose(1, 2))
        for lin in self.linear:
            h = torch.nn.functional.leaky_relu(lin(h))
        return torch.log_softmax(self.classifier(h), dim=-1)
