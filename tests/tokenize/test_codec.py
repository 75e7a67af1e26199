"""DAC codec: weights through DAC.load, batch encode shapes, decode length."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from accord.tokenize.codec import FRAME_RATE, CodecConfig, DacCodec, expected_frames

pytestmark = pytest.mark.integration


def test_random_weights_go_through_the_checkpoint_path(dac_codec) -> None:
    import dac

    assert dac_codec.random_weights and dac_codec.ref == "dac:random" and dac_codec.weights_path.is_file()
    ckpt = torch.load(dac_codec.weights_path, map_location="cpu", weights_only=False)
    assert set(ckpt) == {"state_dict", "metadata"}, "the layout of a trained DAC weights.pth"
    again = dac.DAC.load(str(dac_codec.weights_path), strict=True)
    for k, v in again.state_dict().items():
        assert torch.equal(v, dac_codec.model.state_dict()[k]), k
    explicit = DacCodec.load(str(dac_codec.weights_path))
    assert explicit.random_weights  # the file says what it holds, whatever path reached it
    assert explicit.ref == str(dac_codec.weights_path)
    assert (dac_codec.sample_rate, dac_codec.hop_length, dac_codec.n_codebooks) == (44100, 512, 9)
    assert abs(dac_codec.frame_rate - 86.13) < 0.01


def test_missing_weights_fail_closed_by_default(monkeypatch, tmp_path) -> None:
    from accord.core.weights import ModelNotFound

    monkeypatch.setenv("ACCORD_MODELS", str(tmp_path))
    for config in (None, CodecConfig()):  # the library defaults
        with pytest.raises(ModelNotFound) as e:
            DacCodec.load(config=config)
        msg = str(e.value)  # how to provide the weights, and how to opt out of them
        assert "$ACCORD_MODELS/dac-44khz/weights.pth" in msg
        assert "--allow-random-weights" in msg and "'dac:random'" in msg


def test_opt_in_loads_the_seeded_random_weights(monkeypatch, tmp_path, dac_codec) -> None:
    monkeypatch.setenv("ACCORD_MODELS", str(tmp_path))
    allowed = DacCodec.load(config=CodecConfig(allow_random=True))
    assert allowed.random_weights and allowed.ref == "dac:random"  # records the ref that reproduces it
    assert allowed.weights_path == dac_codec.weights_path
    for k, v in allowed.model.state_dict().items():
        assert torch.equal(v, dac_codec.model.state_dict()[k]), k
    with pytest.raises(ValueError, match="another model"):
        DacCodec.load("ecapa:random")


def test_encode_batch_shapes_and_decode(dac_codec, voice_clips) -> None:
    import soxr

    wavs = [soxr.resample(x[: int(s * 16000)], 16000, 44100).astype(np.float32) for s, (_, x) in
            zip((0.7, 1.3, 0.45), voice_clips, strict=False)]  # fmt: skip
    codes = dac_codec.encode_batch(wavs)
    for w, c in zip(wavs, codes, strict=True):
        seconds = len(w) / 44100
        assert c.dtype == np.int16 and c.shape[0] == 9
        assert abs(c.shape[1] - round(seconds * FRAME_RATE)) <= 1
        assert c.shape[1] == expected_frames(seconds)
        assert c.min() >= 0 and c.max() < 1024
    # padding the batch changes nothing but the last frames (the encoder's receptive field)
    single = dac_codec.encode_batch([wavs[2]])[0]
    assert np.array_equal(single[:, :-8], codes[2][:, :-8])
    wav = dac_codec.decode(torch.from_numpy(codes[0].astype(np.int64))[None])
    assert wav.shape == (1, codes[0].shape[1] * 512) and torch.isfinite(wav).all()
    with pytest.raises(ValueError, match="special ids"):
        dac_codec.decode(torch.full((1, 9, 4), 1024))
