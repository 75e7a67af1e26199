"""Decode any common audio file by content, in fixed windows, resampled to mono.

Containers and codecs are detected from the bytes, not the file name: libsndfile
(``soundfile``) is the fast path for WAV/FLAC/AIFF, PyAV (FFmpeg) handles everything else
(mp3, ogg/opus, m4a/aac, webm, ...). Hour-long files are never whole in memory:
:func:`iter_windows` yields consecutive windows of the 16 kHz mono stream, resampled with
one streaming soxr resampler so window edges are seamless. :func:`read_segment` re-reads a
span of the original (any rate) for the codec stage. Sources are local paths, ``file://``
URIs, any fsspec URI (``s3://``, ``gs://``, ...) or an open binary file object.

Failures raise :class:`AudioError` whose ``error_type`` is one of :mod:`accord.core.errors`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from accord.core import errors

TARGET_RATE = 16000
_SNDFILE_FORMATS = {"WAV", "WAVEX", "FLAC", "AIFF", "W64", "RF64", "CAF"}

Source = str | os.PathLike | IO[bytes]


class AudioError(Exception):
    """A source that cannot be turned into finite audio samples."""

    def __init__(self, error_type: str, reason: str) -> None:
        super().__init__(f"{error_type}: {reason}")
        self.error_type = error_type
        self.reason = reason


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    duration_s: float  # from the header; NaN when the container does not say
    container: str
    codec: str


@dataclass(frozen=True)
class Window:
    """A slice of the resampled mono stream; ``start_s`` is in source seconds."""

    start_s: float
    audio: np.ndarray  # float32 [n] at ``sample_rate``
    sample_rate: int

    @property
    def end_s(self) -> float:
        return self.start_s + len(self.audio) / self.sample_rate


def _local_path(source: Source) -> str | None:
    if isinstance(source, os.PathLike):
        return os.fspath(source)
    if isinstance(source, str):
        if source.startswith("file://"):
            return source[len("file://") :]
        if "://" not in source:
            return source
    return None


@contextlib.contextmanager
def open_source(source: Source) -> Iterator[IO[bytes] | str]:
    """A local path (str) or a seekable binary file object for ``source``."""
    local = _local_path(source)
    if local is not None:
        if not os.path.isfile(local):
            raise FileNotFoundError(local)
        yield local
    elif isinstance(source, str):
        import fsspec

        with fsspec.open(source, "rb") as f:
            yield f
    else:
        source.seek(0)
        yield source


def sha256_of(source: Source, block: int = 1 << 22) -> str:
    """sha256 of the source bytes (streamed)."""
    h = hashlib.sha256()
    with open_source(source) as src:
        f = open(src, "rb") if isinstance(src, str) else src  # noqa: SIM115
        try:
            for chunk in iter(lambda: f.read(block), b""):
                h.update(chunk)
        finally:
            if isinstance(src, str):
                f.close()
    return h.hexdigest()


def _size(src: IO[bytes] | str) -> int:
    if isinstance(src, str):
        return os.path.getsize(src)
    pos = src.tell()
    src.seek(0, io.SEEK_END)
    n = src.tell()
    src.seek(pos)
    return n


def _sndfile_info(src: IO[bytes] | str) -> Any | None:
    """soundfile's info if libsndfile reads this file and it is one of the fast-path formats."""
    import soundfile as sf

    try:
        info = sf.info(src)
    except Exception:
        return None
    finally:
        if not isinstance(src, str):
            src.seek(0)
    return info if info.format in _SNDFILE_FORMATS and info.frames > 0 else None


# Leading bytes of the containers/streams we accept (offset, magic); see :func:`sniff`.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"RIFF", "wav"),
    (0, b"RF64", "wav"),
    (0, b"riff", "w64"),
    (0, b"fLaC", "flac"),
    (0, b"OggS", "ogg"),
    (0, b"ID3", "mp3"),
    (4, b"ftyp", "mp4"),
    (0, b"\x1a\x45\xdf\xa3", "matroska"),
    (0, b"FORM", "aiff"),
    (0, b"caff", "caf"),
    (0, b".snd", "au"),
    (0, b"#!AMR", "amr"),
    (0, b"wvpk", "wavpack"),
    (0, b"MAC ", "ape"),
    (0, b"TTA1", "tta"),
    (0, b"MPCK", "musepack"),
    (0, b"\x30\x26\xb2\x75", "asf"),
    (0, b"\x0b\x77", "ac3"),
    (0, b"\x7f\xfe\x80\x01", "dts"),
)


def sniff(head: bytes) -> str | None:
    """Container name from the first bytes, or None when no audio signature matches.

    Random bytes can look like a few MPEG frames to a forgiving demuxer; requiring a
    signature first makes "not audio" a clear verdict instead of a decode error.
    """
    for offset, magic, name in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return name
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # MPEG audio / ADTS frame sync
        return "mpeg"
    return None


def _head(src: IO[bytes] | str, n: int = 16) -> bytes:
    if isinstance(src, str):
        with open(src, "rb") as f:
            return f.read(n)
    pos = src.tell()
    data = src.read(n)
    src.seek(pos)
    return data


def _check_signature(src: IO[bytes] | str) -> None:
    if _size(src) == 0:
        raise AudioError(errors.EMPTY_FILE, "the file is empty (0 bytes)")
    head = _head(src)
    if sniff(head) is None:
        raise AudioError(
            errors.NOT_AUDIO, f"no audio container signature in the first bytes ({head[:8].hex()})"
        )


def _av_open(src: IO[bytes] | str):
    import av

    try:
        container = av.open(src, mode="r")
    except (av.error.InvalidDataError, av.error.EOFError) as e:
        raise AudioError(errors.NOT_AUDIO, f"no demuxer recognises the data ({e})") from None
    except av.error.FFmpegError as e:
        raise AudioError(errors.DECODE_ERROR, f"cannot open: {e}") from None
    if not container.streams.audio:
        container.close()
        raise AudioError(errors.NOT_AUDIO, "the container has no audio stream")
    return container


def probe(source: Source) -> AudioInfo:
    """Rate, channels and duration from the header, without decoding the audio."""
    with open_source(source) as src:
        _check_signature(src)
        info = _sndfile_info(src)
        if info is not None:
            return AudioInfo(
                info.samplerate, info.channels, info.frames / info.samplerate, info.format, info.subtype
            )
        container = _av_open(src)
        try:
            stream = container.streams.audio[0]
            ctx = stream.codec_context
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            else:
                duration = math.nan
            channels = ctx.channels or (ctx.layout.nb_channels if ctx.layout else 0)
            return AudioInfo(
                int(ctx.sample_rate or 0), int(channels), duration, container.format.name, ctx.name
            )
        finally:
            container.close()


def _check_finite(x: np.ndarray, at_s: float) -> None:
    if not np.isfinite(x).all():
        raise AudioError(errors.NAN_SAMPLES, f"non-finite samples (NaN/inf) near {at_s:.2f} s")


def _native_blocks(src: IO[bytes] | str, block_s: float) -> Iterator[tuple[np.ndarray, int]]:
    """Mono float32 blocks at the native rate, and that rate."""
    info = _sndfile_info(src)
    if info is not None:
        import soundfile as sf

        n = max(1, int(block_s * info.samplerate))
        got = 0
        try:
            for block in sf.blocks(src, blocksize=n, dtype="float32", always_2d=True):
                got += len(block)
                yield block.mean(axis=1) if block.shape[1] > 1 else block[:, 0], info.samplerate
        except sf.LibsndfileError as e:
            raise AudioError(errors.DECODE_ERROR, f"libsndfile: {e}") from None
        if got < info.frames:
            raise AudioError(errors.DECODE_ERROR, f"truncated: header says {info.frames} frames, read {got}")
        return
    yield from _av_blocks(src, block_s)


_INT_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}


def _frame_mono(frame: Any) -> np.ndarray:
    """One decoded PyAV frame as mono float32 (channel mean), any sample format."""
    x = frame.to_ndarray()
    fmt = frame.format
    channels = max(1, len(frame.layout.channels))
    x = x.reshape(channels, -1) if fmt.is_planar else x.reshape(-1, channels).T
    base = fmt.name.rstrip("p")
    if base in _INT_SCALE:
        scale = _INT_SCALE[base]
        x = (x.astype(np.float64) - (128.0 if base == "u8" else 0.0)) / scale
    x = x.astype(np.float32, copy=False)
    return x.mean(axis=0) if channels > 1 else x[0]


def _av_blocks(src: IO[bytes] | str, block_s: float) -> Iterator[tuple[np.ndarray, int]]:
    import av

    container = _av_open(src)
    try:
        stream = container.streams.audio[0]
        rate = int(stream.codec_context.sample_rate or 0)
        if rate <= 0:
            raise AudioError(errors.DECODE_ERROR, "the audio stream has no sample rate")
        pending: list[np.ndarray] = []
        n_pending = 0
        target = max(1, int(block_s * rate))
        try:
            for frame in container.decode(stream):
                x = _frame_mono(frame)
                pending.append(x)
                n_pending += len(x)
                if n_pending >= target:
                    yield np.concatenate(pending), rate
                    pending, n_pending = [], 0
        except av.error.FFmpegError as e:
            raise AudioError(errors.DECODE_ERROR, f"decoding failed: {e}") from None
        if pending:
            yield np.concatenate(pending), rate
    finally:
        container.close()


def iter_windows(source: Source, window_s: float = 60.0, sample_rate: int = TARGET_RATE) -> Iterator[Window]:
    """Consecutive windows of ``window_s`` seconds of the mono stream at ``sample_rate``.

    Raises :class:`AudioError` for an empty file, non-audio bytes, a decode failure
    (including truncation detected by the demuxer), non-finite samples, or zero samples.
    """
    import soxr

    with open_source(source) as src:
        _check_signature(src)
        win = round(window_s * sample_rate)
        buf: list[np.ndarray] = []
        n_buf = 0
        emitted = 0
        stream = None
        native_pos = 0
        for x, rate in _native_blocks(src, block_s=min(window_s, 10.0)):
            _check_finite(x, native_pos / rate)
            native_pos += len(x)
            if rate != sample_rate:
                if stream is None:
                    stream = soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality="HQ")
                x = stream.resample_chunk(x, last=False)
            buf.append(x)
            n_buf += len(x)
            while n_buf >= win:
                flat = np.concatenate(buf)
                yield Window(emitted / sample_rate, flat[:win].copy(), sample_rate)
                emitted += win
                buf, n_buf = [flat[win:]], n_buf - win
        if stream is not None:
            tail = stream.resample_chunk(np.zeros(0, np.float32), last=True)
            buf.append(tail)
            n_buf += len(tail)
        if n_buf:
            yield Window(emitted / sample_rate, np.concatenate(buf), sample_rate)
            emitted += n_buf
        if emitted == 0:
            raise AudioError(errors.EMPTY_AUDIO, "the file decodes to zero samples")


def read_audio(source: Source, sample_rate: int = TARGET_RATE) -> np.ndarray:
    """The whole file as mono float32 at ``sample_rate`` (short files and tests only)."""
    return np.concatenate([w.audio for w in iter_windows(source, 60.0, sample_rate)])


def read_segment(
    source: Source, start_s: float, end_s: float, sample_rate: int | None = TARGET_RATE
) -> tuple[np.ndarray, int]:
    """Mono float32 samples of ``[start_s, end_s)`` of the source, and their rate.

    ``sample_rate=None`` keeps the source rate (the codec stage resamples to its own rate
    from the original, never from the 16 kHz copy).
    """
    import soxr

    if end_s <= start_s:
        raise ValueError(f"empty segment [{start_s}, {end_s})")
    with open_source(source) as src:
        info = _sndfile_info(src)
        if info is not None:
            import soundfile as sf

            rate = info.samplerate
            f0, f1 = round(start_s * rate), round(end_s * rate)
            x = sf.read(src, start=f0, stop=min(f1, info.frames), dtype="float32", always_2d=True)[0]
            x = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
        else:
            x, rate = _av_segment(src, start_s, end_s)
    _check_finite(x, start_s)
    if len(x) == 0:
        raise AudioError(errors.EMPTY_AUDIO, f"no samples in [{start_s:.3f}, {end_s:.3f}) s")
    if sample_rate is not None and sample_rate != rate:
        x = soxr.resample(x, rate, sample_rate, quality="HQ").astype(np.float32, copy=False)
        rate = sample_rate
    return np.ascontiguousarray(x, dtype=np.float32), rate


def _av_segment(src: IO[bytes] | str, start_s: float, end_s: float) -> tuple[np.ndarray, int]:
    import av

    container = _av_open(src)
    try:
        stream = container.streams.audio[0]
        rate = int(stream.codec_context.sample_rate)
        if start_s > 1.0:
            # Seeks to a keyframe at or before start; exact trimming below uses frame times.
            container.seek(int(max(0.0, start_s - 0.5) * 1_000_000), any_frame=False)
        f0, f1 = round(start_s * rate), round(end_s * rate)
        t0 = stream.start_time or 0  # encoder delay (mp3, aac): pts of the first kept sample
        parts: list[np.ndarray] = []
        pos: int | None = None  # sample index (at ``rate``) of the next output sample
        try:
            for frame in container.decode(stream):
                if pos is None:  # first frame after a seek; afterwards count samples (pts can jitter)
                    t = float((frame.pts - t0) * frame.time_base) if frame.pts is not None else 0.0
                    pos = round(t * rate)
                if pos >= f1:
                    break
                x = _frame_mono(frame)
                a, b = max(f0 - pos, 0), min(f1 - pos, len(x))
                if b > a:
                    parts.append(x[a:b])
                pos += len(x)
        except av.error.FFmpegError as e:
            raise AudioError(errors.DECODE_ERROR, f"decoding failed: {e}") from None
        return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), rate
    finally:
        container.close()
