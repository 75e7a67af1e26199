"""The ZONOS2 release's 2048-d voice embedding: architecture, front end, weights loader, and the
``zonos2-spk:*`` references through :class:`SpeakerEncoder` (seeded random weights only)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from accord.core import weights
from accord.core.weights import ModelNotFound, choose_weights
from accord.tokenize import voice_embedding as ve
from accord.tokenize.lda import LdaConfig, fit_lda
from accord.tokenize.speaker import ZONOS2_RANDOM_REF, ZONOS2_REF, SpeakerConfig, SpeakerEncoder


@pytest.fixture(autouse=True)
def _private_cache(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setenv("ACCORD_CACHE", str(tmp_path_factory.getbasetemp() / "accord-cache"))


@pytest.fixture(scope="module")
def model() -> ve.VoiceEmbedding:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return ve.VoiceEmbedding().eval()


def _wav(batch: int, n: int, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(batch, n, generator=torch.Generator().manual_seed(seed))


def _random_encoder() -> SpeakerEncoder:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return SpeakerEncoder.load(ZONOS2_RANDOM_REF)


def test_state_dict_is_the_released_layout(model: ve.VoiceEmbedding) -> None:
    """Names and shapes of the released file (as zonos2.cpp's speaker encoder reads them)."""
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = {"blocks.0.conv.weight": (512, 128, 5), "blocks.0.conv.bias": (512,)}
    for i in (1, 2, 3):
        p = f"blocks.{i}"
        expected |= {f"{p}.tdnn1.conv.weight": (512, 512, 1), f"{p}.tdnn1.conv.bias": (512,)}
        for j in range(7):  # Res2Net scale 8: seven 64-channel groups convolved
            expected |= {f"{p}.res2net_block.blocks.{j}.conv.weight": (64, 64, 3)}
            expected |= {f"{p}.res2net_block.blocks.{j}.conv.bias": (64,)}
        expected |= {f"{p}.tdnn2.conv.weight": (512, 512, 1), f"{p}.tdnn2.conv.bias": (512,)}
        expected |= {f"{p}.se_block.conv1.weight": (128, 512, 1), f"{p}.se_block.conv1.bias": (128,)}
        expected |= {f"{p}.se_block.conv2.weight": (512, 128, 1), f"{p}.se_block.conv2.bias": (512,)}
    expected |= {"mfa.conv.weight": (1536, 1536, 1), "mfa.conv.bias": (1536,)}
    expected |= {"asp.tdnn.conv.weight": (128, 4608, 1), "asp.tdnn.conv.bias": (128,)}
    expected |= {"asp.conv.weight": (1536, 128, 1), "asp.conv.bias": (1536,)}
    expected |= {"fc.weight": (2048, 3072, 1), "fc.bias": (2048,)}
    assert shapes == expected
    dilations = [model.blocks[i].res2net_block.blocks[0].conv.dilation[0] for i in (1, 2, 3)]
    assert dilations == [2, 3, 4]


def test_front_end_is_the_release_mel(model: ve.VoiceEmbedding) -> None:
    """Our log-mel equals torchaudio's MelSpectrogram configured as ZONOS2 configures it."""
    import torchaudio

    cfg = model.cfg
    assert (cfg.sample_rate, cfg.n_mels, cfg.n_fft, cfg.hop_length, cfg.f_max, cfg.log_floor) == (
        24_000,
        128,
        1024,
        256,
        12_000.0,
        1e-5,
    )
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=24_000,
        n_fft=1024,
        win_length=1024,
        hop_length=256,
        f_min=0.0,
        f_max=12_000.0,
        n_mels=128,
        power=1.0,
        center=False,
        norm="slaney",
        mel_scale="slaney",
    )
    x = _wav(2, 5000)
    padded = torch.nn.functional.pad(x[:, None], (384, 384), mode="reflect")[:, 0]
    ref = mel(padded).clamp(min=1e-5).log()
    ours = model.front_end(x)
    assert ours.shape == (2, 128, model.front_end.n_frames(5000)) == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    assert not any(k.startswith("front_end") for k in model.state_dict()), (
        "the release file has no mel tensors"
    )


def test_shapes_and_batch_independence(model: ve.VoiceEmbedding) -> None:
    x = _wav(3, 4000)
    with torch.inference_mode():
        emb = model(x)
        one = model(x[1:2])
    assert emb.shape == (3, 2048) and torch.isfinite(emb).all()
    torch.testing.assert_close(emb[1:2], one, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="too short"):
        model(x[:, :100])


def test_released_file_loader_round_trips(model: ve.VoiceEmbedding, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    x = _wav(1, 4000)
    with torch.inference_mode():
        want = model(x)
    save_file(model.state_dict(), str(tmp_path / "model.safetensors"))
    torch.save({f"speaker_encoder.{k}": v for k, v in model.state_dict().items()}, tmp_path / "full.pt")
    for path in (tmp_path, tmp_path / "model.safetensors", tmp_path / "full.pt"):
        with torch.inference_mode():
            torch.testing.assert_close(ve.load_voice_embedding(path)(x), want, rtol=0, atol=0)


def test_wrong_file_names_expected_and_found_keys(model: ve.VoiceEmbedding, tmp_path: Path) -> None:
    torch.save(torch.nn.Linear(4, 4).state_dict(), tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not the ZONOS2 voice-embedding weights") as e:
        ve.load_voice_embedding(tmp_path / "other.pt")
    msg = str(e.value)
    assert "Missing: asp.conv.bias" in msg and "Unexpected: bias, weight" in msg, msg
    state = model.state_dict()
    state["fc.weight"] = state["fc.weight"][:1024]  # the 0.6B model's 1024-d encoder
    torch.save(state, tmp_path / "small.pt")
    with pytest.raises(ValueError, match=r"fc.weight: found \(1024, 3072, 1\), expected \(2048, 3072, 1\)"):
        ve.load_voice_embedding(tmp_path / "small.pt")


def test_random_weights_only_by_opt_in_and_recorded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ACCORD_MODELS", str(tmp_path))
    with pytest.raises(ModelNotFound) as e:
        SpeakerEncoder.load(ZONOS2_REF)  # the release's weights are absent: refuse
    assert "$ACCORD_MODELS/zonos2-spk" in str(e.value) and repr(ZONOS2_RANDOM_REF) in str(e.value)
    with pytest.warns(UserWarning, match="RANDOM"):
        assert choose_weights(ZONOS2_REF, allow_random=True) == weights.ModelWeights(
            ZONOS2_RANDOM_REF, None, True
        )
    with pytest.warns(UserWarning, match="RANDOM"):
        enc = SpeakerEncoder.load(config=SpeakerConfig(ref=ZONOS2_REF, allow_random=True))
    assert enc.random_weights and enc.ref == ZONOS2_RANDOM_REF
    assert (enc.dim, enc.sample_rate, enc.info["format"]) == (2048, 24_000, "zonos2-spk")
    # The cached random dir passed as a path is still random weights, and says so.
    again = SpeakerEncoder.load(f"zonos2-spk:{enc.info['path']}")
    assert again.random_weights and again.ref == f"zonos2-spk:{enc.info['path']}"
    # A trained file under $ACCORD_MODELS is taken as trained (here: weights saved from our module).
    (tmp_path / "zonos2-spk").mkdir()
    torch.save(ve.VoiceEmbedding().state_dict(), tmp_path / "zonos2-spk" / "model.pt")
    trained = SpeakerEncoder.load(ZONOS2_REF)
    assert not trained.random_weights and trained.ref == ZONOS2_REF


def test_seeded_random_encoder_output_is_fixed() -> None:
    """Recorded from this implementation's forward on the ``zonos2-spk:random`` weights."""
    emb = _random_encoder().embed(_wav(2, 6000))
    assert emb.shape == (2, 2048)
    got = [emb.abs().sum().item(), *emb[0, :4].tolist(), *emb[1, -3:].tolist()]
    want = [606.14496, -0.0624957, -0.2004229, -0.3812437, -0.2212541, 0.5553917, 0.0492838, -0.1646780]
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


def test_padded_batch_equals_one_by_one() -> None:
    """No length mask in the release: padding must never reach the network."""
    enc = _random_encoder()
    wavs = [_wav(1, n, seed=n)[0].numpy() for n in (3000, 4700, 6100)]
    batched = enc.embed_batch(wavs)
    single = np.stack([enc.embed(torch.from_numpy(w)[None])[0].numpy() for w in wavs])
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-5)


def test_lda_fits_2048_d_embeddings(caplog: pytest.LogCaptureFixture) -> None:
    """2048 -> LDA capped at speakers - 1; with fewer embeddings than dimensions the SVD solver
    still fits (fit_lda checks the affine form against scikit-learn) and warns that it is
    rank-deficient. (Shrinkage's eigen solver is O(D^3): too slow for a unit test at 2048.)"""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (5, 2048))
    x = np.concatenate([c + 0.3 * rng.normal(0, 1, (6, 2048)) for c in centres]).astype(np.float32)
    labels = [f"spk{i}" for i in range(5) for _ in range(6)]
    proj = fit_lda(x, labels, LdaConfig(lda_dim=1024))
    assert proj.weight.shape == (4, 2048) and proj.bias.shape == (4,) and proj.mean.shape == (2048,)
    assert np.isfinite(proj(x)).all()
    assert "rank-deficient" in caplog.text
