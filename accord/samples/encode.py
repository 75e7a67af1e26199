"""Write float audio to containers/codecs with ffmpeg, and read any of them back with PyAV.

ffmpeg runs with bitexact flags and no metadata, so the same samples give the same bytes.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np


@dataclass(frozen=True)
class Format:
    """A container + codec pair; ``rates`` are the sample rates the codec accepts (None: any)."""

    name: str
    ext: str
    codec_args: tuple[str, ...]
    rates: tuple[int, ...] | None = None


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("wav16", "wav", ("-c:a", "pcm_s16le")),
        Format("wavf32", "wav", ("-c:a", "pcm_f32le")),
        Format("flac", "flac", ("-c:a", "flac", "-sample_fmt", "s16")),
        Format(
            "mp3", "mp3", ("-c:a", "libmp3lame", "-b:a", "96k"), (16000, 22050, 24000, 32000, 44100, 48000)
        ),
        Format("ogg_opus", "ogg", ("-c:a", "libopus", "-b:a", "64k"), (8000, 12000, 16000, 24000, 48000)),
        Format("m4a_aac", "m4a", ("-c:a", "aac", "-b:a", "128k")),
        Format("webm_opus", "webm", ("-c:a", "libopus", "-b:a", "64k"), (8000, 12000, 16000, 24000, 48000)),
    )
}

_BITEXACT = ("-fflags", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1")


def ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        raise RuntimeError("ffmpeg not found: install it with `apt-get install ffmpeg`")
    return path


def write(x_TC: np.ndarray, sr: int, path: Path, fmt: str | Format) -> Path:
    """Encode float samples in [-1, 1] (shape [T] or [T, C]) to ``path`` with format ``fmt``."""
    f = FORMATS[fmt] if isinstance(fmt, str) else fmt
    if f.rates is not None and sr not in f.rates:
        raise ValueError(f"{f.name} does not take {sr} Hz; use one of {f.rates}")
    x_TC = np.asarray(x_TC, dtype="<f4")
    if x_TC.ndim == 1:
        x_TC = x_TC[:, None]
    cmd = [ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    cmd += ["-f", "f32le", "-ar", str(sr), "-ac", str(x_TC.shape[1]), "-i", "pipe:0"]
    cmd += [*f.codec_args, *_BITEXACT, str(path)]
    proc = subprocess.run(cmd, input=np.ascontiguousarray(x_TC).tobytes(), capture_output=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(
            f"ffmpeg failed writing {path.name}: {proc.stderr.decode(errors='replace')[-400:]}"
        )
    return path


def decode(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode any container PyAV knows (by content, not extension) to float32 [T, C] and its rate."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        chunks = []
        sr = stream.codec_context.sample_rate
        for frame in container.decode(stream):
            a = frame.to_ndarray()
            # planar frames are [C, T]; packed ones interleave channels in one row
            a = a.T if frame.format.is_planar else a.reshape(-1, frame.layout.nb_channels)
            if a.dtype.kind == "i":
                a = a.astype(np.float32) / float(-np.iinfo(a.dtype).min)
            chunks.append(a.astype(np.float32, copy=False))
            sr = frame.sample_rate
    if not chunks:
        return np.zeros((0, 1), np.float32), int(sr or 0)
    return np.concatenate(chunks, axis=0), int(sr)


def load_mono(path: str | Path, sr: int | None = None) -> np.ndarray:
    """Decode, downmix to mono and (optionally) resample to ``sr``; float32 [T]."""
    from accord.samples.mixing import resample

    x_TC, file_sr = decode(path)
    x_T = x_TC.mean(axis=1)
    if sr is not None and sr != file_sr:
        x_T = resample(x_T.astype(np.float64), file_sr, sr)
    return x_T.astype(np.float32)


def lag_samples(ref_T: np.ndarray, test_T: np.ndarray, max_lag: int) -> int:
    """Delay of ``test_T`` relative to ``ref_T`` in samples (positive: test is later), by FFT correlation."""
    n = min(len(ref_T), len(test_T))
    if n == 0:
        return 0
    size = 1 << int(np.ceil(np.log2(2 * n)))
    xc = np.fft.irfft(np.fft.rfft(test_T[:n], size) * np.conj(np.fft.rfft(ref_T[:n], size)), size)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    return int(lags[np.argmax(xc[lags])])
