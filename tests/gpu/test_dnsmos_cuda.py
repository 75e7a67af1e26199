"""DNSMOS P.835's network on the tier's device (``DnsmosConfig(device="cuda")``) against ONNX
Runtime's outputs, on real speech (issue #28).

The GPU image lacks what builds the windows and reads the ONNX file (scipy, soundfile, onnx,
moonshine_voice): ``scripts/gpu_prepare.sh`` writes them, the reference outputs and the weights
to ``.gpu/dnsmos_fixture.npz`` (``tests/pipeline_steps/dnsmos_windows.py``); this test reads
that file, or ``$ACCORD_GPU_DNSMOS_FIXTURE``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from accord.pipeline import dnsmos as D
from accord.pipeline.dnsmos_net import build

from ..pipeline_steps.dnsmos_windows import BF16_MAX, BF16_MEAN, WEIGHT_PREFIX
from .conftest import write_report

pytestmark = pytest.mark.gpu
FIXTURE_ENV = "ACCORD_GPU_DNSMOS_FIXTURE"
DEFAULT_FIXTURE = Path(__file__).resolve().parents[2] / ".gpu" / "dnsmos_fixture.npz"


@pytest.fixture(scope="module")
def fixture() -> dict[str, np.ndarray]:
    path = Path(os.environ.get(FIXTURE_ENV) or DEFAULT_FIXTURE)
    if not path.is_file():
        pytest.fail(f"no DNSMOS fixture at {path}: run scripts/gpu_prepare.sh first (it travels in .gpu/)")
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_network_on_the_tier_device_matches_onnx_runtime(tier, fixture, precision):
    weights = {k[len(WEIGHT_PREFIX) :]: v for k, v in fixture.items() if k.startswith(WEIGHT_PREFIX)}
    net = build(weights, precision, str(tier.device))
    windows = torch.from_numpy(fixture["windows"]).to(tier.device)
    with torch.inference_mode():
        raw_W3 = net(windows).float().cpu().numpy()
        # batch invariance: one window alone scores as it does among the others
        alone_3 = net(windows[:1]).float().cpu().numpy()[0]
        if tier.cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(5):
            net(windows)
        if tier.cuda:
            torch.cuda.synchronize()
        ms_per_window = 1000 * (time.perf_counter() - t0) / (5 * len(windows))
    diff_W3 = np.abs(D.polyfit(raw_W3) - D.polyfit(fixture["reference"]))
    write_report(
        f"dnsmos_{precision}",
        {
            "device": str(tier.device),
            "ms_per_window": round(ms_per_window, 3),
            "mean_abs_diff_sig_bak_ovrl": diff_W3.mean(axis=0).round(4).tolist(),
            "max_abs_diff": float(diff_W3.max().round(4)),
        },
    )
    assert diff_W3.mean(axis=0).max() < BF16_MEAN and diff_W3.max() < BF16_MAX, diff_W3
    np.testing.assert_allclose(alone_3, raw_W3[0], atol=2e-2 if precision == "bf16" else 5e-3)
