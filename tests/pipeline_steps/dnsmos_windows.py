"""Real-speech windows for the DNSMOS P.835 network checks, and the GPU tier's fixture file.

The windows: nine 9.01 s windows of the moonshine_voice package's real recordings, three clean,
three under 5 dB white noise, three under 15 dB pink noise (a tiled 4 s clip among them).

The GPU image has no scipy, soundfile, onnx or moonshine_voice, so ``scripts/gpu_prepare.sh``
runs this file to write the windows, ONNX Runtime's raw outputs for them (the reference) and the
network's weights as read from the ONNX file into one ``.npz`` that travels in ``.gpu/``
(``tests/gpu/test_dnsmos_cuda.py`` reads it):

    python tests/pipeline_steps/dnsmos_windows.py .gpu/dnsmos_fixture.npz
"""

from __future__ import annotations

import sys
from math import gcd
from pathlib import Path

import numpy as np

from accord.pipeline import dnsmos as D

SR = D.RATE
# Bounds on |score - ONNX Runtime's| for the network in PyTorch (bf16, or on a GPU), a third of
# the one-window default's own tolerance (OVRL 0.04 mean, 0.10 max).
BF16_MEAN = 0.013  # per score, over the windows; measured <= 0.004 (CPU, bf16)
BF16_MAX = 0.035  # any window, any score; measured <= 0.029 (CPU, bf16)
WEIGHT_PREFIX = "w:"  # npz key of a weight: prefix + its ONNX initializer name


def assets() -> Path:
    import moonshine_voice

    return Path(moonshine_voice.__file__).parent / "assets"


def read(name: str) -> np.ndarray:
    import soundfile as sf
    from scipy.signal import resample_poly

    x, sr = sf.read(assets() / name, dtype="float32", always_2d=True)
    g = gcd(sr, SR)
    return resample_poly(x.mean(axis=1), SR // g, sr // g).astype(np.float32)


def real_windows() -> np.ndarray:
    """``[9, 144160]`` float32: the windows described above (deterministic)."""
    from accord.samples import mixing

    clean = [
        D.windows(read("two_cities.wav")[SR * 20 :], 1)[0],
        D.windows(read("endgame_nagg_nell.wav"), 1)[0],
        D.windows(read("clone-test.wav"), 1)[0],
    ]
    rng = np.random.default_rng(0)
    out = list(clean)
    for kind, snr_db in (("white", 5.0), ("pink", 15.0)):
        for x_T in clean:
            bg = getattr(mixing, f"{kind}_noise")(len(x_T), rng)
            active = np.abs(x_T) > 0.01 * np.abs(x_T).max()
            out.append(mixing.add_at_snr(x_T, bg, snr_db, active).astype(np.float32))
    return np.stack(out)


def write_fixture(path: str | Path) -> Path:
    """Windows, ONNX Runtime's raw SIG/BAK/OVRL for them, and the P.835 weights, in one ``.npz``."""
    from accord.core.weights import resolve
    from accord.pipeline.dnsmos_net import read_onnx_weights

    windows = real_windows()
    reference = D.Dnsmos(D.DnsmosConfig(precision="fp32", threads=2)).load().primary_raw(windows)
    weights = read_onnx_weights(Path(resolve("dnsmos")) / D.PRIMARY_FILE)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path, windows=windows, reference=reference, **{WEIGHT_PREFIX + k: v for k, v in weights.items()}
    )
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/pipeline_steps/dnsmos_windows.py OUT.npz")
    print(f"dnsmos fixture: {write_fixture(sys.argv[1])}")
