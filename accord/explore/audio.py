"""A clip's audio for the browser: its segment of the source as WAV bytes, and waveform peaks.

Only the clip's span is decoded (:func:`accord.core.audio_io.read_segment`, local files or any
fsspec URL), at the source's rate up to 48 kHz, as 16-bit PCM: the ``<audio>`` element gets an
exact Content-Length and so a duration, and HTTP Range requests (seeking) are served from the
same bytes, kept for the few clips most recently opened.
"""

from __future__ import annotations

import io
import re
import threading
from collections import OrderedDict

import numpy as np
import soundfile as sf

from accord.core.audio_io import read_segment

MAX_RATE = 48_000
CONTEXT_S = 0.5  # audio shown around a clip in its waveform, so its VAD boundaries are visible
PEAKS = 1000


class SegmentCache:
    """WAV bytes of the last ``size`` clips played (a seek re-requests the same bytes)."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.items: OrderedDict[tuple[str, float, float], bytes] = OrderedDict()
        self.lock = threading.Lock()

    def wav(self, source_uri: str, start_s: float, end_s: float) -> bytes:
        key = (source_uri, float(start_s), float(end_s))
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        data = segment_wav(source_uri, start_s, end_s)
        with self.lock:
            self.items[key] = data
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return data


def segment_wav(source_uri: str, start_s: float, end_s: float) -> bytes:
    """``[start_s, end_s)`` of the source as a mono 16-bit WAV file."""
    x, rate = read_segment(source_uri, start_s, end_s, sample_rate=None)
    if rate > MAX_RATE:
        x, rate = read_segment(source_uri, start_s, end_s, sample_rate=MAX_RATE)
    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1.0, 1.0), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` of a single ``bytes=`` Range header, inclusive; None for the whole file
    (no header, or one this server does not serve: several ranges)."""
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", (header or "").strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if m.group(1):
        first = int(m.group(1))
        last = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    else:  # suffix: the last N bytes
        first, last = max(0, size - int(m.group(2))), size - 1
    return first, last


def waveform(source_uri: str, start_s: float, end_s: float, source_duration_s: float) -> dict:
    """Min/max peaks of the clip with ``CONTEXT_S`` of its source either side, for drawing."""
    t0 = max(0.0, start_s - CONTEXT_S)
    t1 = end_s + CONTEXT_S
    if source_duration_s == source_duration_s and source_duration_s > 0:  # not NaN
        t1 = min(t1, source_duration_s)
    x, rate = read_segment(source_uri, t0, max(t1, end_s), sample_rate=16_000)
    n = max(1, len(x) // PEAKS)
    m = len(x) // n
    blocks = x[: m * n].reshape(m, n).astype(np.float64)
    return {
        "t0": t0,
        "t1": t0 + len(x) / rate,
        "min": np.round(blocks.min(axis=1), 4).tolist(),
        "max": np.round(blocks.max(axis=1), 4).tolist(),
    }
