"""One speaker per clip: GE2E embeddings of sliding windows, compared within the clip.

A VAD clip can hold two voices (a dialogue turn, a question before the answer); TTS training
wants one. Each clip is cut into GE2E partials (1.6 s windows, the length the encoder was
trained on) every ``hop_s``; resemblyzer's ``VoiceEncoder`` embeds all windows of a batch of
clips in bounded forward passes.

- ``consistency``: the lowest cosine between a window's embedding and the clip embedding (the
  L2-normed mean of its windows, resemblyzer's utterance embedding). Near 0.9 for one speaker.
- ``split_sim``: the lowest cosine, over boundaries ``b`` at window starts, between the mean of
  the windows that end by ``b`` and the mean of those that start from ``b``. Against the clip
  mean, "A then B" looks half-alike from both sides; two averaged sides do not, so this
  separates one voice from two better (measured AUC 0.997 vs 0.987 on TTS voice pairs).
- ``change_s``: where the first run of boundaries with ``split_sim`` below ``change_threshold``
  is deepest (its minimum), in seconds from the clip start; NaN when none is below.

Silence: resemblyzer's ``preprocess_wav`` drops long pauses with webrtcvad before embedding, and
so does this module (same mask: :func:`speech_indices`), keeping the kept sample indices so that
times are on the original clip. Without it a pause inside a window pulls that window away from
the speaker (measured below in the tests' notes).

Clips with less than two windows (1.6 s of speech or less after trimming; empty or silent
clips) get NaN for all three: one window cannot disagree with itself. Just above 1.6 s the two
windows overlap almost wholly and score near 1, so short clips say little either way.
Eligibility treats NaN as failing only where a stage sets a threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

SAMPLE_RATE = 16_000
FRAME_HOP = 160  # samples per mel frame (10 ms), resemblyzer's ``mel_window_step``
WINDOW_FRAMES = 160  # GE2E partial: 1.6 s
VAD_FRAME = 480  # 30 ms webrtcvad frames, resemblyzer's ``vad_window_length``
VAD_SMOOTH = 8  # resemblyzer's ``vad_moving_average_width``
VAD_MAX_SILENCE = 6  # resemblyzer's ``vad_max_silence_length``
NORM_DBFS = -30.0  # resemblyzer's ``audio_norm_target_dBFS`` (raise quiet clips only)


@dataclass(frozen=True)
class SpeakerConsistencyConfig:
    """Window layout and the change threshold (cosine of GE2E embeddings)."""

    weights: str = "ge2e:resemblyzer"
    device: str = "cpu"
    hop_s: float = 0.4  # window hop; windows are 1.6 s (the encoder's partial)
    change_threshold: float = 0.75  # split_sim below which a boundary is a speaker change
    trim_silence: bool = True  # drop long pauses (webrtcvad, as resemblyzer's preprocess_wav)
    vad_mode: int = 3
    max_windows_per_pass: int = 256  # bound on one forward pass (memory)


@dataclass
class SpeakerScore:
    """One clip's result; the arrays describe the windows (times on the original clip)."""

    consistency: float
    change_s: float
    window_start_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    window_end_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    split_sim: float = math.nan
    sim_to_clip_W: np.ndarray = field(default_factory=lambda: np.zeros(0))
    split_sim_W: np.ndarray = field(default_factory=lambda: np.zeros(0))  # boundary at window_start_s

    @property
    def n_windows(self) -> int:
        return len(self.window_start_s)


def _nan_score() -> SpeakerScore:
    return SpeakerScore(math.nan, math.nan)


def speech_indices(x_T: np.ndarray, vad_mode: int = 3) -> np.ndarray:
    """Sample indices resemblyzer's ``trim_long_silences`` keeps (webrtcvad, smoothed, dilated)."""
    import webrtcvad
    from scipy.ndimage import binary_dilation

    n_frames = len(x_T) // VAD_FRAME
    if n_frames == 0:
        return np.zeros(0, dtype=np.int64)
    pcm = (np.clip(x_T[: n_frames * VAD_FRAME], -1.0, 1.0) * 32767).round().astype("<i2").tobytes()
    vad = webrtcvad.Vad(vad_mode)
    step = VAD_FRAME * 2
    flags = np.array(
        [vad.is_speech(pcm[i * step : (i + 1) * step], SAMPLE_RATE) for i in range(n_frames)], dtype=float
    )
    padded = np.concatenate((np.zeros((VAD_SMOOTH - 1) // 2), flags, np.zeros(VAD_SMOOTH // 2)))
    smooth = np.convolve(padded, np.ones(VAD_SMOOTH) / VAD_SMOOTH, mode="valid")
    mask = binary_dilation(np.round(smooth).astype(bool), np.ones(VAD_MAX_SILENCE + 1))
    return np.flatnonzero(np.repeat(mask, VAD_FRAME))


def window_starts(n_frames: int, hop_frames: int) -> np.ndarray:
    """Window start frames every ``hop_frames``, plus one flush with the end (no padding)."""
    if n_frames < WINDOW_FRAMES:
        return np.zeros(0, dtype=np.int64)
    last = n_frames - WINDOW_FRAMES
    starts = np.arange(0, last + 1, hop_frames)
    if starts[-1] != last:
        starts = np.append(starts, last)
    return starts


class SpeakerConsistency:
    """GE2E (resemblyzer's ``VoiceEncoder``, its shipped ``pretrained.pt``) over sliding windows."""

    def __init__(self, config: SpeakerConsistencyConfig | None = None) -> None:
        self.config = config or SpeakerConsistencyConfig()
        self.encoder: torch.nn.Module | None = None

    def load(self) -> SpeakerConsistency:
        """Load the encoder once per process from local weights only."""
        if self.encoder is None:
            from resemblyzer import VoiceEncoder

            from accord.weights import resolve  # lazily, as every model loader of pipeline/

            path = resolve(self.config.weights)
            fpath = path / "pretrained.pt" if path.is_dir() else path
            self.encoder = VoiceEncoder(self.config.device, verbose=False, weights_fpath=fpath).eval()
        return self

    def _windows(self, x_T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(mels_WFC, start_s_W, end_s_W) of one clip, or None when it has no full window."""
        from resemblyzer.audio import normalize_volume, wav_to_mel_spectrogram

        x_T = np.asarray(x_T, dtype=np.float32).reshape(-1)
        if len(x_T) < WINDOW_FRAMES * FRAME_HOP or not np.any(x_T):
            return None
        x_T = normalize_volume(x_T, NORM_DBFS, increase_only=True).astype(np.float32)
        keep_K = (
            speech_indices(x_T, self.config.vad_mode) if self.config.trim_silence else np.arange(len(x_T))
        )
        if len(keep_K) < WINDOW_FRAMES * FRAME_HOP:
            return None
        mel_FC = wav_to_mel_spectrogram(x_T[keep_K])
        hop_frames = max(1, round(self.config.hop_s * SAMPLE_RATE / FRAME_HOP))
        starts = window_starts(len(mel_FC), hop_frames)
        if len(starts) == 0:
            return None
        mels_WFC = np.stack([mel_FC[s : s + WINDOW_FRAMES] for s in starts])
        first = np.minimum(starts * FRAME_HOP, len(keep_K) - 1)
        last = np.minimum((starts + WINDOW_FRAMES) * FRAME_HOP, len(keep_K)) - 1
        return mels_WFC, keep_K[first] / SAMPLE_RATE, (keep_K[last] + 1) / SAMPLE_RATE

    def _embed(self, mels_NFC: np.ndarray) -> np.ndarray:
        """Window embeddings (L2-normed, 256-d) in bounded forward passes."""
        assert self.encoder is not None, "call load() first"
        out: list[np.ndarray] = []
        step = max(1, self.config.max_windows_per_pass)
        with torch.inference_mode():
            for i in range(0, len(mels_NFC), step):
                chunk = torch.from_numpy(mels_NFC[i : i + step]).to(self.encoder.device)
                out.append(self.encoder(chunk).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 256), dtype=np.float32)

    def score_batch(self, audios_16k: list[np.ndarray]) -> list[SpeakerScore]:
        """Score clips (float32 mono 16 kHz); the windows of all clips share the forward passes."""
        if self.encoder is None:
            self.load()
        laid = [self._windows(x) for x in audios_16k]
        mels = [w[0] for w in laid if w is not None]
        emb_ND = self._embed(np.concatenate(mels)) if mels else np.zeros((0, 256), dtype=np.float32)
        out: list[SpeakerScore] = []
        at = 0
        for w in laid:
            if w is None:
                out.append(_nan_score())
                continue
            n = len(w[0])
            out.append(self._score_clip(emb_ND[at : at + n], w[1], w[2]))
            at += n
        return out

    def score(self, audio_16k: np.ndarray) -> SpeakerScore:
        return self.score_batch([audio_16k])[0]

    def _score_clip(self, emb_WD: np.ndarray, start_s: np.ndarray, end_s: np.ndarray) -> SpeakerScore:
        if len(emb_WD) < 2:
            return SpeakerScore(math.nan, math.nan, start_s, end_s)
        clip_D = emb_WD.mean(axis=0)
        sim_clip_W = emb_WD @ (clip_D / np.linalg.norm(clip_D))
        split_W = np.ones(len(emb_WD))
        for i, b in enumerate(start_s):
            left, right = end_s <= b + 1e-6, start_s >= b - 1e-6
            if left.any() and right.any():
                l_D, r_D = emb_WD[left].mean(axis=0), emb_WD[right].mean(axis=0)
                split_W[i] = float(l_D @ r_D / (np.linalg.norm(l_D) * np.linalg.norm(r_D)))
        below_W = split_W < self.config.change_threshold
        change = math.nan
        if below_W.any():
            first = int(np.argmax(below_W))
            run = int(np.argmin(below_W[first:])) if not below_W[first:].all() else len(below_W) - first
            change = float(start_s[first + int(np.argmin(split_W[first : first + run]))])
        return SpeakerScore(
            float(sim_clip_W.min()), change, start_s, end_s, float(split_W.min()), sim_clip_W, split_W
        )


def split_at_change(
    start_s: float, end_s: float, change_s: float, min_part_s: float = 1.0
) -> list[tuple[float, float]]:
    """The sub-spans of a clip ``[start_s, end_s)`` (source times) cut at its ``change_s`` (clip
    time), so the ingest can keep both speakers' parts instead of dropping the clip. No change
    (NaN) gives the clip itself; a part shorter than ``min_part_s`` is left out."""
    if not math.isfinite(change_s):
        return [(start_s, end_s)]
    cut = start_s + change_s
    return [(a, b) for a, b in ((start_s, cut), (cut, end_s)) if b - a >= min_part_s]
