"""accord's GE2E (pipeline/ge2e.py) and its features against resemblyzer and librosa themselves:
the same embeddings from the same weights, without importing either at run time (issue #28)."""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np
import pytest

from accord.pipeline.mel import filterbank, power_mel

SR = 16_000


def _real_speech() -> np.ndarray:
    """Ten seconds of real read speech (the moonshine_voice package's two_cities.wav), 16 kHz."""
    moonshine = pytest.importorskip("moonshine_voice")
    import soundfile as sf
    from scipy.signal import resample_poly

    x, sr = sf.read(
        Path(moonshine.__file__).parent / "assets" / "two_cities.wav", dtype="float32", always_2d=True
    )
    g = gcd(sr, SR)
    return resample_poly(x.mean(axis=1), SR // g, sr // g).astype(np.float32)[: 10 * SR]


@pytest.mark.parametrize(("n_fft", "n_mels"), [(400, 40), (321, 120), (512, 80)])
def test_filterbank_is_librosas(n_fft: int, n_mels: int):
    librosa = pytest.importorskip("librosa")
    want = librosa.filters.mel(sr=SR, n_fft=n_fft, n_mels=n_mels, dtype=np.float64)
    np.testing.assert_allclose(filterbank(SR, n_fft, n_mels), want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("n", [16_000, 16_159, 401])
def test_power_mel_is_librosas_melspectrogram(n: int):
    """Frame count and values of the centred spectrogram, even and odd lengths and windows."""
    librosa = pytest.importorskip("librosa")
    x_T = (0.1 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)
    for n_fft in (400, 321):
        want = librosa.feature.melspectrogram(y=x_T, sr=SR, n_fft=n_fft, hop_length=160, n_mels=40).T
        got = power_mel(x_T[None], SR, n_fft, 160, 40)[0]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-7 * want.max())


def test_mel_frames_and_volume_are_resemblyzers():
    audio = pytest.importorskip("resemblyzer.audio")
    from accord.pipeline.ge2e import mel_frames, normalize_volume

    x_T = _real_speech()
    quiet = 0.01 * x_T
    want = audio.normalize_volume(quiet, -30.0, increase_only=True)
    np.testing.assert_allclose(normalize_volume(quiet, -30.0, increase_only=True), want, rtol=1e-5)
    assert normalize_volume(x_T, -60.0, increase_only=True) is x_T  # louder: unchanged
    want = audio.wav_to_mel_spectrogram(x_T)
    got = mel_frames(x_T)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6 * want.max())


def test_embeddings_are_resemblyzers_on_real_speech():
    """Partials of real speech give resemblyzer's own VoiceEncoder embeddings (cosine > 0.9999)."""
    resemblyzer = pytest.importorskip("resemblyzer")
    import torch

    from accord.core.weights import resolve
    from accord.pipeline.ge2e import load_encoder, mel_frames

    path = resolve("ge2e:resemblyzer")
    path = path / "pretrained.pt" if path.is_dir() else path
    ours = load_encoder(path)
    theirs = resemblyzer.VoiceEncoder("cpu", verbose=False, weights_fpath=path).eval()
    x_T = _real_speech()
    mel_FC = mel_frames(x_T)
    mels_NFC = np.stack([mel_FC[s : s + 160] for s in range(0, len(mel_FC) - 160, 40)])
    with torch.inference_mode():
        a_ND = ours(torch.from_numpy(mels_NFC)).numpy()
        b_ND = theirs(torch.from_numpy(resemblyzer.audio.wav_to_mel_spectrogram(x_T)[None, :160])).numpy()
        c_ND = theirs(torch.from_numpy(mels_NFC)).numpy()
    assert len(a_ND) >= 20
    np.testing.assert_allclose(np.linalg.norm(a_ND, axis=1), 1.0, rtol=1e-5)
    assert (np.sum(a_ND * c_ND, axis=1) > 0.9999).all()
    assert float(np.dot(a_ND[0], b_ND[0])) > 0.9999  # their features, their network: the same first partial
