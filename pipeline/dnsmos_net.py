"""DNSMOS P.835's network (``sig_bak_ovr.onnx``) re-stated in PyTorch, weights read from that file.

Why: in fp32 the network is at the core's speed under ONNX Runtime (~40 GFLOP per 9.01 s
window, ~0.38 s on one core here), and ONNX Runtime has no bf16 convolutions on x86. oneDNN
runs the same convolutions in bf16 (fp32 accumulation) on CPUs with native bf16 dot products
(AVX512-BF16, AMX) at ~2x the fp32 speed, and PyTorch runs the network on a GPU. In fp32 this
module gives ONNX Runtime's outputs to float rounding (``tests/pipeline_steps/test_dnsmos_net.py``);
in bf16 the MOS scores move by ~0.002 on average and a few hundredths at most, on real speech.

The graph, as the ONNX file holds it: 20 ms frames at a 10 ms hop (the window's first 144000
samples, then the same shifted by 160), a 320-point DFT as two 1x1 convolutions (real,
imaginary; 161 bins), log10 of the power floored at 1e-12, seven 3x3 convolutions with ReLU
(1-128-64-64-32, max-pool 2, 32, max-pool 2, 32, max-pool 2, 64), a global max, three dense
layers (64-128-64-3). The first convolution has one input channel, which oneDNN runs slowly
(~0.1 s): here it is a matmul over the nine shifted copies of the log power, whose output is
already the channels-last layout the other convolutions want.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where the network is built (~2 s per process)
    import torch

FRAMES = 900
HOP = 160
FRAME = 320
BINS = 161
CONVS = ("conv2d", "conv2d_1", "conv2d_2", "conv2d_3", "conv2d_4", "conv2d_5", "conv2d_6")
POOL_AFTER = ("conv2d_3", "conv2d_4", "conv2d_5")
DENSE = ("dense", "dense_1", "dense_3")
DFT_REAL = "time2freq/stft-real/kernel:0"
DFT_IMAG = "time2freq/stft-imag/kernel:0"
LOG10 = 2.3025851  # the graph divides the natural log by this constant
POWER_FLOOR = 1e-12


def dense_names(name: str) -> tuple[str, str]:
    """The ONNX file's names of a dense layer's kernel and bias."""
    prefix = f"mos_estimator_logpow/{name}"
    return f"{prefix}/MatMul/ReadVariableOp/resource:0", f"{prefix}/BiasAdd/ReadVariableOp/resource:0"


def weight_names() -> dict[str, tuple[int, ...]]:
    """Initializer name -> shape of every weight the network reads from the ONNX file."""
    shapes: dict[str, tuple[int, ...]] = {DFT_REAL: (BINS, FRAME, 1), DFT_IMAG: (BINS, FRAME, 1)}
    channels = (1, 128, 64, 64, 32, 32, 32, 64)
    for name, cin, cout in zip(CONVS, channels[:-1], channels[1:], strict=True):
        shapes[f"{name}/kernel:0"] = (cout, cin, 3, 3)
        shapes[f"{name}/bias:0"] = (cout,)
    for name, (din, dout) in zip(DENSE, ((64, 128), (128, 64), (64, 3)), strict=True):
        kernel, bias = dense_names(name)
        shapes[kernel], shapes[bias] = (din, dout), (dout,)
    return shapes


def read_onnx_weights(path: str | Path) -> dict[str, np.ndarray]:
    """The network's weights from ``sig_bak_ovr.onnx``; raises ``ValueError`` when the file is
    not that graph (a weight missing or of another shape), so another model never runs here."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    found = {t.name: t for t in graph.initializer}
    out: dict[str, np.ndarray] = {}
    for name, shape in weight_names().items():
        if name not in found:
            raise ValueError(f"{path} is not DNSMOS sig_bak_ovr: no weight {name!r}")
        w = numpy_helper.to_array(found[name]).astype(np.float32)
        if w.shape != shape:
            raise ValueError(f"{path}: weight {name!r} has shape {w.shape}, expected {shape}")
        out[name] = w
    return out


def native_bf16(device: str) -> bool:
    """Whether ``device`` multiplies bf16 natively: a CUDA GPU of compute capability 8.0 or
    newer, or a CPU with AVX512-BF16 or AMX-BF16 (elsewhere oneDNN emulates bf16, slower than fp32)."""
    if device.startswith("cuda"):
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8)
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def build(weights: dict[str, np.ndarray], dtype: str = "bf16", device: str = "cpu") -> torch.nn.Module:
    """The network as a ``torch.nn.Module`` on ``device``: raw SIG/BAK/OVRL ``[B, 3]`` float32
    from windows ``[B, 144160]`` float32. ``dtype`` is the convolutions' (``"bf16"`` or ``"fp32"``);
    the DFT, the log and the dense layers stay fp32."""
    import torch

    conv_dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]

    class P835Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = {k: torch.from_numpy(v) for k, v in weights.items()}
            dft = torch.cat([w[DFT_REAL], w[DFT_IMAG]])
            self.register_buffer("dft_FK", dft[:, :, 0].T.contiguous())  # [320, 2 * 161]
            self.register_buffer("w0_KC", w["conv2d/kernel:0"].reshape(128, 9).T.to(conv_dtype))
            self.register_buffer("b0_C", w["conv2d/bias:0"].to(conv_dtype))
            for name in CONVS[1:]:
                kernel = w[f"{name}/kernel:0"].to(conv_dtype)
                self.register_buffer(f"{name}_w", kernel.contiguous(memory_format=torch.channels_last))
                self.register_buffer(f"{name}_b", w[f"{name}/bias:0"].to(conv_dtype))
            for name in DENSE:
                kernel, bias = dense_names(name)
                self.register_buffer(f"{name}_w", w[kernel])
                self.register_buffer(f"{name}_b", w[bias])

        def forward(self, x_BT: torch.Tensor) -> torch.Tensor:
            F = torch.nn.functional
            frames_BNF = torch.cat(
                [x_BT[:, : FRAMES * HOP].reshape(-1, FRAMES, HOP), x_BT[:, HOP:].reshape(-1, FRAMES, HOP)], 2
            )
            spec_BN2K = frames_BNF @ self.dft_FK
            re_BNK, im_BNK = spec_BN2K[..., :BINS], spec_BN2K[..., BINS:]
            power_BNK = torch.sqrt(re_BNK * re_BNK + im_BNK * im_BNK) ** 2  # Sqrt then Pow, as the graph
            logp_BNK = torch.log(torch.clamp(power_BNK, min=POWER_FLOOR)) / LOG10
            B, N, K = logp_BNK.shape
            padded = F.pad(logp_BNK, (1, 1, 1, 1))
            taps_BNK9 = torch.stack([padded[:, i : i + N, j : j + K] for i in range(3) for j in range(3)], -1)
            h_BNKC = torch.addmm(self.b0_C, taps_BNK9.reshape(-1, 9).to(conv_dtype), self.w0_KC)
            h = torch.relu_(h_BNKC).reshape(B, N, K, -1).permute(0, 3, 1, 2)  # channels-last NCHW view
            for name in CONVS[1:]:
                w, b = getattr(self, f"{name}_w"), getattr(self, f"{name}_b")
                h = torch.relu_(F.conv2d(h, w, b, padding=1))
                if name in POOL_AFTER:
                    h = F.max_pool2d(h, 2)
            h_BC = h.float().amax(dim=(2, 3))
            h_BC = torch.relu(h_BC @ self.dense_w + self.dense_b)
            h_BC = torch.relu(h_BC @ self.dense_1_w + self.dense_1_b)
            return h_BC @ self.dense_3_w + self.dense_3_b

    return P835Net().to(device).eval()
