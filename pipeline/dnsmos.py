"""DNSMOS: non-intrusive speech quality (P.835 SIG/BAK/OVRL and P.808 MOS) per 16 kHz clip.

The algorithm is Microsoft DNS-Challenge ``dnsmos_local.py`` (non-personalised): a clip is
tiled (doubled until it reaches one window) and cut into 9.01 s windows (144160 samples) at a
1 s hop; each window is scored by ``sig_bak_ovr.onnx`` on its waveform (raw SIG/BAK/OVRL,
then the published polynomial fits) and by ``model_v8.onnx`` (P.808) on the log-mel of its
first 144000 samples; the clip's scores are the means over its windows. The ONNX files are the
ones speechmos ships (``accord.core.weights.resolve("dnsmos")``); none of speechmos's code runs.

Both graphs take a batch dimension (inputs ``[N, 144160]`` and ``[N, 900, 120]``), so the
windows of many clips go through one ``session.run`` per chunk of ``batch_windows``.

``precision`` picks how the P.835 network (~97 % of the cost) runs: ``"fp32"`` is the ONNX file
under ONNX Runtime (the reference); ``"bf16"`` is :mod:`accord.pipeline.dnsmos_net` (the same
weights in PyTorch, bf16 convolutions): 1.5x faster on a CPU with native bf16 dot products,
scores within a few hundredths of the reference (measured in ``tests/pipeline_steps/test_dnsmos_net.py``
on real speech); ``"auto"`` takes bf16 where the device multiplies bf16 natively. On a GPU
(``device="cuda"``) the network runs in PyTorch at either precision. P.808 (~3 %) always runs
in ONNX Runtime on the CPU.

Two deliberate departures from the reference script:

- window starts are exact integers (``k * 16000``). The reference slices at
  ``int((k + 9.01) * 16000)`` in floating point, which is one sample short for k = 7..23, and
  it then *skips* those windows, so clips (after tiling) of 17 s or longer lose windows 7-23;
- a clip that is too short, silent or has non-finite samples gets NaN scores (see
  :meth:`Dnsmos.unscorable_reason`) instead of whatever the networks say about it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from accord.pipeline.mel import power_mel

RATE = 16000
WINDOW = 144160  # 9.01 s: the input length of sig_bak_ovr.onnx
HOP = RATE  # 1 s between window starts
MEL_SAMPLES = WINDOW - 160  # P.808 sees the window without its last 160 samples
N_FFT = 321
MEL_HOP = 160
N_MELS = 120
MEL_FRAMES = 1 + (MEL_SAMPLES + 2 * (N_FFT // 2) - N_FFT) // MEL_HOP  # 900: centred STFT, odd n_fft
TOP_DB = 80.0  # librosa.power_to_db defaults, as the reference calls it
AMIN = 1e-10
PRECISIONS = ("auto", "fp32", "bf16")
PRIMARY_FILE = "sig_bak_ovr.onnx"
P808_FILE = "model_v8.onnx"

# Non-personalised polynomial fits of dnsmos_local.py (highest power first, as np.polyval).
SIG_POLY = (-0.08397278, 1.22083953, 0.0052439)
BAK_POLY = (-0.13166888, 1.60915514, -0.39604546)
OVRL_POLY = (-0.06766283, 1.11546468, 0.04602535)


@dataclass(frozen=True)
class DnsmosConfig:
    """Where the models are, how they run, and which clips are not scored.

    ``max_windows`` trades fidelity for time: ``None`` scores every window as the reference
    does (a tiled 3-8 s clip has 1-9 windows, 4 on average, of ~0.4 s CPU each on a laptop
    core); ``n`` keeps ``n`` evenly spaced windows (first and last included). Tiled short
    clips repeat the same audio, so few windows change little: on 16 TTS clips of 3-8 s,
    ``3`` moved OVRL by 0.015 on average (0.08 at most) and ``1`` by 0.04 (0.10 at most).
    """

    model: str = "dnsmos"  # accord.core.weights reference, or a dir with the two ONNX files
    threads: int = 1  # intra-op threads of each onnxruntime session (and of PyTorch on a CPU)
    precision: str = "auto"  # P.835's network: "fp32" (ONNX Runtime), "bf16" (PyTorch), "auto"
    device: str = "cpu"  # where P.835's network runs: "cpu" or "cuda[:N]" (PyTorch)
    batch_windows: int = 16  # windows per session.run
    max_windows: int | None = None
    min_duration_s: float = 0.5  # shorter clips get NaN scores
    silence_dbfs: float = -60.0  # clips whose RMS is below this get NaN scores

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ValueError(f"device {self.device!r}: expected 'cpu' or 'cuda[:N]'")


@dataclass(frozen=True)
class DnsmosScores:
    """One clip's scores (MOS scale, roughly 1-5); all NaN when the clip was not scored."""

    sig: float
    bak: float
    ovrl: float
    p808: float
    windows: int  # windows averaged; 0 when not scored

    @classmethod
    def unscored(cls) -> DnsmosScores:
        return cls(math.nan, math.nan, math.nan, math.nan, 0)


def tile(x_T: np.ndarray) -> np.ndarray:
    """The reference's tiling: the clip doubled until it is at least one window long."""
    while len(x_T) < WINDOW:
        x_T = np.concatenate([x_T, x_T])
    return x_T


def window_starts(n_samples: int, max_windows: int | None = None) -> np.ndarray:
    """Start samples of the windows of an (already tiled) clip of ``n_samples``.

    The reference's count, ``int(floor(n / 16000) - 9.01) + 1``, is ``max(1, floor(n / 16000) - 9)``.
    """
    if n_samples < WINDOW:
        raise ValueError(f"{n_samples} samples is shorter than one window ({WINDOW}); tile first")
    n = max(1, n_samples // RATE - 9)
    starts = np.arange(n) * HOP
    if max_windows is not None and n > max_windows:
        starts = starts[np.unique(np.round(np.linspace(0, n - 1, max(1, max_windows))).astype(int))]
    return starts


def windows(x_T: np.ndarray, max_windows: int | None = None) -> np.ndarray:
    """The clip's scoring windows, ``[W, 144160]`` float32."""
    x_T = tile(np.asarray(x_T, np.float32))
    starts = window_starts(len(x_T), max_windows)
    return np.stack([x_T[s : s + WINDOW] for s in starts])


def log_mel(x_BT: np.ndarray) -> np.ndarray:
    """P.808 input of each window, ``[B, 900, 120]`` float32: the reference's
    ``(power_to_db(melspectrogram(x[:-160]), ref=max) + 40) / 40``, transposed.

    Centred STFT (zero padding, n_fft 321, hop 160, periodic Hann), power mel spectrogram,
    dB relative to each window's own maximum, floored 80 dB below it.
    """
    mel_BFM = power_mel(np.asarray(x_BT)[:, :MEL_SAMPLES], RATE, N_FFT, MEL_HOP, N_MELS)
    db_BFM = 10.0 * np.log10(np.maximum(AMIN, mel_BFM))
    peak_B11 = db_BFM.max(axis=(1, 2), keepdims=True)
    db_BFM = np.maximum(db_BFM - np.maximum(peak_B11, 10.0 * np.log10(AMIN)), -TOP_DB)
    return ((db_BFM + 40.0) / 40.0).astype(np.float32)


def polyfit(raw_W3: np.ndarray) -> np.ndarray:
    """Raw SIG/BAK/OVRL network outputs -> MOS through the non-personalised fits, ``[W, 3]``."""
    raw_W3 = np.asarray(raw_W3, np.float64)
    return np.stack(
        [np.polyval(p, raw_W3[:, i]) for i, p in enumerate((SIG_POLY, BAK_POLY, OVRL_POLY))], axis=1
    )


def _session(path: Path, threads: int):
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def resolve_precision(config: DnsmosConfig) -> str:
    """``"fp32"`` or ``"bf16"`` (the config checked its value): ``"auto"`` is bf16 where the
    config's device multiplies bf16 natively."""
    if config.precision != "auto":
        return config.precision
    from accord.pipeline.dnsmos_net import native_bf16

    return "bf16" if native_bf16(config.device) else "fp32"


class Dnsmos:
    """The two DNSMOS models, loaded once per process; :meth:`score_batch` scores clips."""

    def __init__(self, config: DnsmosConfig | None = None) -> None:
        self.config = config or DnsmosConfig()
        self.precision = resolve_precision(self.config)
        self._primary = None  # ONNX Runtime session (fp32 on the CPU) or the PyTorch network
        self._p808 = None

    @property
    def uses_torch(self) -> bool:
        return self.precision == "bf16" or self.config.device != "cpu"

    def load(self) -> Dnsmos:
        if self._primary is None:
            from accord.core.weights import resolve

            root = Path(resolve(self.config.model))
            missing = [f for f in (PRIMARY_FILE, P808_FILE) if not (root / f).is_file()]
            if missing:
                raise FileNotFoundError(f"DNSMOS dir {root} lacks {', '.join(missing)}")
            if self.uses_torch:
                import torch

                from accord.pipeline.dnsmos_net import build, read_onnx_weights

                if self.config.device == "cpu":
                    torch.set_num_threads(max(1, self.config.threads))
                weights = read_onnx_weights(root / PRIMARY_FILE)
                self._primary = build(weights, self.precision, self.config.device)
            else:
                self._primary = _session(root / PRIMARY_FILE, self.config.threads)
            self._p808 = _session(root / P808_FILE, self.config.threads)
        return self

    def primary_raw(self, x_WT: np.ndarray) -> np.ndarray:
        """Raw SIG/BAK/OVRL ``[W, 3]`` of P.835's network for windows of 144160 samples."""
        if not self.uses_torch:
            return self._primary.run(None, {"input_1": x_WT})[0]
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(x_WT).to(self.config.device)
            return self._primary(x).float().cpu().numpy()

    def unscorable_reason(self, x_T: np.ndarray) -> str | None:
        """Why a clip gets NaN scores (``None``: it is scored): ``empty``, ``too_short``
        (under ``min_duration_s``), ``non_finite`` (NaN/inf samples) or ``silent`` (RMS under
        ``silence_dbfs``; the networks still answer ~2-3 for digital silence, which means nothing)."""
        if len(x_T) == 0:
            return "empty"
        if len(x_T) < self.config.min_duration_s * RATE:
            return "too_short"
        if not np.isfinite(x_T).all():
            return "non_finite"
        rms = math.sqrt(float(np.mean(np.square(x_T, dtype=np.float64))))
        if 20.0 * math.log10(max(rms, 1e-12)) < self.config.silence_dbfs:
            return "silent"
        return None

    def score_windows(self, x_WT: np.ndarray) -> np.ndarray:
        """``[W, 4]`` (SIG, BAK, OVRL, P.808) for windows of exactly 144160 samples, one
        ``session.run`` of each model for all of them (callers chunk)."""
        self.load()
        x_WT = np.ascontiguousarray(x_WT, np.float32)
        raw_W3 = self.primary_raw(x_WT)
        p808_W1 = self._p808.run(None, {"input_1": log_mel(x_WT)})[0]
        return np.concatenate([polyfit(raw_W3), np.asarray(p808_W1, np.float64)[:, :1]], axis=1)

    def score_batch(self, audios_16k: list[np.ndarray]) -> list[DnsmosScores]:
        """Scores of each clip (1-D float, 16 kHz), in order. The windows of all scorable clips
        are scored together, ``batch_windows`` per ``session.run`` (only one chunk of windows is
        in memory at a time); unscorable clips get :meth:`DnsmosScores.unscored`."""
        clips = [np.asarray(a, np.float32) for a in audios_16k]
        for x_T in clips:
            if x_T.ndim != 1:
                raise ValueError(f"DNSMOS takes mono 1-D audio, got shape {x_T.shape}")
        # (clip index, tiled clip, window start) of every window to score
        jobs: list[tuple[int, np.ndarray, int]] = []
        for i, x_T in enumerate(clips):
            if self.unscorable_reason(x_T) is None:
                tiled = tile(x_T)
                jobs += [(i, tiled, int(s)) for s in window_starts(len(tiled), self.config.max_windows)]
        sums_C4 = np.zeros((len(clips), 4), np.float64)
        counts_C = np.zeros(len(clips), np.int64)
        step = max(1, self.config.batch_windows)
        for k in range(0, len(jobs), step):
            chunk = jobs[k : k + step]
            scores_B4 = self.score_windows(np.stack([x[s : s + WINDOW] for _, x, s in chunk]))
            idx_B = np.array([i for i, _, _ in chunk])
            np.add.at(sums_C4, idx_B, scores_B4)
            np.add.at(counts_C, idx_B, 1)
        out = []
        for total_4, n in zip(sums_C4, counts_C, strict=True):
            if n == 0:
                out.append(DnsmosScores.unscored())
            else:
                mean_4 = total_4 / n
                out.append(DnsmosScores(*(float(v) for v in mean_4), windows=int(n)))
        return out

    def score(self, audio_16k: np.ndarray) -> DnsmosScores:
        return self.score_batch([audio_16k])[0]
