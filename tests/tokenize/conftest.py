"""Fixtures for the tokenize tests: real models loaded once per session, real bucket audio."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def dac_codec():
    import torch

    from accord.tokenize.codec import DacCodec

    torch.set_num_threads(2)
    return DacCodec.load("dac:random")  # no trained DAC ships offline: the explicit opt-in


@pytest.fixture(scope="session")
def auralis_encoder():
    from accord.tokenize.speaker import SpeakerEncoder

    return SpeakerEncoder.load("ecapa:auralis")


@pytest.fixture(scope="session")
def voice_clips(sample_bucket):
    """(voice, 16 kHz wav) for the first 3 sentences of 4 clean English voices, read from source."""
    from accord.core.audio_io import read_segment

    files = ["en_espeak_us.wav", "en_flite_slt.flac", "en_espeak_f3.wav", "en_flite_rms.webm"]
    out = []
    for name in files:
        for s in sample_bucket.truth[name]["sentences"][:3]:
            x, _ = read_segment(str(sample_bucket.path / name), s["start_s"], s["end_s"], 16000)
            out.append((s["voice"], x))
    return out
