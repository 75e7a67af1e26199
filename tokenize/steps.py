"""Tokenize's steps on the job runner: a shard's clips, each read from its source, DAC, ECAPA.

A shard (its manifest rows) is the unit: :class:`ShardClipsStep` expands it into its clips and
:class:`ReadStep` reads each clip's span at 44.1 kHz (both in the unit's source task); then
:class:`CodecStep` (DAC codes, plus the 16 kHz copy) and :class:`SpeakerStep` (ECAPA: full
clip, the speaker crop, K augmented copies, and the finished sample) run in actor pools over
batches of ``TokenizeConfig.batch_size`` clips. A clip that fails raises (or, in a batch,
returns) an :class:`ItemError`; the runner turns it into an ``errors/`` row and goes on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from accord.core.clip import sample_meta
from accord.core.shards import RANDOM_WEIGHTS_KEY, ShardSample, check_clip_id
from accord.jobs.step import Item, ItemError, Step
from accord.tokenize.augment import augment, rng_for
from accord.tokenize.codec import HOP_LENGTH, DacCodec, n_frames_for
from accord.tokenize.codec import SAMPLE_RATE as CODEC_RATE
from accord.tokenize.config import TokenizeConfig
from accord.tokenize.speaker import SpeakerEncoder, speaker_sample_rate

SPEAKER_WAV = "wav_speaker"  # item key: the clip at the speaker encoder's sample rate
MODEL_SECONDS = "model_s"  # item key: this clip's share of its batches' DAC and ECAPA forwards


def crop_range(clip_id: str, n_frames: int, cfg: TokenizeConfig) -> tuple[int, int]:
    """Speaker-crop frames ``[f0, f1)``: length from ``crop_fraction`` clamped to ``crop_seconds``,
    position drawn from a generator seeded by the clip id."""
    fr = CODEC_RATE / HOP_LENGTH
    lo, hi = (max(1, round(s * fr)) for s in cfg.crop_seconds)
    length = min(n_frames, max(lo, min(hi, round(cfg.crop_fraction * n_frames))))
    f0 = int(rng_for(clip_id, "crop").integers(0, n_frames - length + 1))
    return f0, f0 + length


def _charge(items: list[Item], seconds: float) -> None:
    """Spread a batch's model time over its items (summed again on the driver)."""
    for it in items:
        it[MODEL_SECONDS] = it.get(MODEL_SECONDS, 0.0) + seconds / max(1, len(items))


def _tag_random(it: Item, refs: list[str]) -> None:
    """Record on the item which of the models that touched it had random weights, so the driver
    can check the workers loaded what ``tokenize.json`` says (a cluster's nodes may differ)."""
    it[RANDOM_WEIGHTS_KEY] = sorted({*it.get(RANDOM_WEIGHTS_KEY, ()), *refs})


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


class ShardClipsStep(Step):
    """A shard unit ``{"shard", "clips"}`` -> its clip rows, one by one (in plan order)."""

    name = "tokenize:plan"

    def process(self, item: Item) -> list[Item]:
        return list(self.iter_process(item))

    def iter_process(self, item: Item) -> Iterator[Item]:
        for clip in item["clips"]:
            yield dict(clip)


class ReadStep(Step):
    """Each clip's span from its source at 44.1 kHz, padded/trimmed to exactly its duration."""

    name = "tokenize:read"

    def __init__(self, config: TokenizeConfig) -> None:
        self.cfg = config
        self._sha: dict[str, str] = {}  # source -> sha256, hashed once per worker

    def _fail(self, error_type: str, reason: str) -> ItemError:
        return ItemError(self.name, error_type, reason)

    def read(self, item: Item) -> np.ndarray:
        from accord.core.audio_io import read_segment, sha256_of

        try:
            check_clip_id(item["clip_id"])
        except ValueError as e:
            raise self._fail("bad_clip_id", str(e)) from None
        start, end = float(item["start_s"]), float(item["end_s"])
        if not (math.isfinite(start) and math.isfinite(end)) or end - start < self.cfg.min_clip_seconds:
            raise self._fail("bad_span", f"span [{start}, {end}) is under {self.cfg.min_clip_seconds} s")
        src = item["source_uri"]
        if self.cfg.verify_sha256 and item.get("source_sha256"):
            if src not in self._sha:
                self._sha[src] = sha256_of(src)
            if self._sha[src] != item["source_sha256"]:
                raise self._fail("source_changed", f"sha256 of {src} differs from the manifest's")
        try:
            x, _ = read_segment(src, start, end, CODEC_RATE)
        except FileNotFoundError as e:
            raise self._fail("missing_source", f"not found: {e}") from None
        want = round((end - start) * CODEC_RATE)
        if want - len(x) > self.cfg.max_short_read_s * CODEC_RATE:
            raise self._fail(
                "short_read", f"source gave {len(x) / CODEC_RATE:.3f} s of a {end - start:.3f} s clip"
            )
        return np.pad(x, (0, max(0, want - len(x))))[:want]

    def process(self, item: Item) -> list[Item]:
        return [{**item, "wav44": self.read(item)}]


class TextNormStep(Step):
    """Each transcript's ``text_normalized``: its written ``text`` in the spoken form the release
    serves (:mod:`accord.tokenize.textnorm`, with the clip's language); the sample's ``normalization_outcome``
    says how (normalized, passthrough: no grammars for the language, failed, off)."""

    name = "tokenize:textnorm"

    def __init__(self, config: TokenizeConfig) -> None:
        self.cfg = config

    def process(self, item: Item) -> list[Item]:
        from accord.tokenize import textnorm

        language, transcripts, outcomes = item.get("language") or "", [], set()
        for t in item.get("transcripts") or []:
            text, outcome = t.get("text"), textnorm.OFF
            if self.cfg.text_normalization and text is not None:
                text, outcome = textnorm.normalize_status(text, language)
            outcomes.add(outcome)
            transcripts.append({**t, "text_normalized": text})
        # the sample's outcome: its worst transcript's (no transcript: as configured)
        order = (textnorm.FAILED, textnorm.PASSTHROUGH, textnorm.OFF, textnorm.NORMALIZED)
        default = textnorm.NORMALIZED if self.cfg.text_normalization else textnorm.OFF
        outcome = next((o for o in order if o in outcomes), default)
        return [{**item, "transcripts": transcripts, "normalization_outcome": outcome}]


class CodecStep(Step):
    """DAC codes for a batch of clips; also leaves the 16 kHz copy the speaker step needs."""

    name = "tokenize:dac"

    def __init__(self, config: TokenizeConfig, codec: DacCodec | None = None) -> None:
        self.cfg, self.codec = config, codec

    def setup(self) -> None:
        _set_threads(self.cfg.torch_threads)
        if self.codec is None:
            self.codec = DacCodec.load(config=self.cfg.codec)

    @property
    def random_refs(self) -> list[str]:
        return [self.codec.ref] if self.codec.random_weights else []

    def _finish(self, it: Item, codes: np.ndarray) -> Item:
        import soxr

        _tag_random(it, self.random_refs)
        wav44 = it.pop("wav44")
        if codes.shape[-1] != n_frames_for(len(wav44)):
            raise ItemError(self.name, "frame_mismatch", f"codes {codes.shape}")
        try:
            rate = speaker_sample_rate(self.cfg.speaker.ref)
            it[SPEAKER_WAV] = soxr.resample(wav44, CODEC_RATE, rate, quality="HQ").astype(np.float32)
        except Exception as e:
            raise ItemError(self.name, type(e).__name__, f"resample: {e}") from e
        it["codes"] = codes
        return it

    def _encode(self, items: list[Item]) -> list[np.ndarray]:
        t0 = time.perf_counter()
        codes = self.codec.encode_batch([it["wav44"] for it in items])
        _charge(items, time.perf_counter() - t0)
        return codes

    def process(self, item: Item) -> list[Item]:
        return [self._finish(item, self._encode([item])[0])]

    def process_batch(self, items: list[Item]) -> list[Any]:
        out: list[Any] = []
        for it, c in zip(items, self._encode(items), strict=True):
            try:
                out.append(self._finish(it, c))
            except ItemError as e:
                out.append(e)
        return out


class SpeakerStep(Step):
    """ECAPA embeddings per clip (full clip, the speaker crop, each augmented copy) and the
    finished shard sample."""

    name = "tokenize:speaker"

    def __init__(self, config: TokenizeConfig, encoder: SpeakerEncoder | None = None) -> None:
        self.cfg, self.encoder = config, encoder

    def setup(self) -> None:
        _set_threads(self.cfg.torch_threads)
        if self.encoder is None:
            self.encoder = SpeakerEncoder.load(config=self.cfg.speaker)

    @property
    def random_refs(self) -> list[str]:
        return [self.encoder.ref] if self.encoder.random_weights else []

    def _views(self, it: Item) -> tuple[list[np.ndarray], tuple[int, int]]:
        try:
            x, rate = it[SPEAKER_WAV], self.encoder.sample_rate
            f0, f1 = crop_range(it["clip_id"], it["codes"].shape[-1], self.cfg)
            s0 = round(f0 * HOP_LENGTH * rate / CODEC_RATE)
            s1 = round(f1 * HOP_LENGTH * rate / CODEC_RATE)
            return [x, x[s0:s1], *augment(x, it["clip_id"], self.cfg.augment, rate)], (f0, f1)
        except Exception as e:
            raise ItemError(self.name, type(e).__name__, f"augment: {e}") from e

    def _finish(self, it: Item, emb_VD: np.ndarray, crop: tuple[int, int]) -> Item:
        _tag_random(it, self.random_refs)
        it.pop(SPEAKER_WAV)
        codes = it.pop("codes")
        if not np.isfinite(emb_VD).all():
            raise ItemError(self.name, "nan_embedding", "non-finite speaker embedding")
        it["sample"] = ShardSample(
            codes=codes,
            spk=emb_VD[0],
            spkcrop=emb_VD[1],
            spkaug=emb_VD[2:],
            meta=sample_meta(it, codes.shape[-1], crop, self.cfg.augment.names),
        )
        return it

    def _embed(self, items: list[Item], views: list[np.ndarray]) -> np.ndarray:
        t0 = time.perf_counter()
        emb = self.encoder.embed_batch(views) if views else np.zeros((0, 0), np.float32)
        _charge(items, time.perf_counter() - t0)
        return emb

    def process(self, item: Item) -> list[Item]:
        views, crop = self._views(item)
        return [self._finish(item, self._embed([item], views), crop)]

    def process_batch(self, items: list[Item]) -> list[Any]:
        out: list[Any] = [None] * len(items)
        views: list[np.ndarray] = []
        spans: list[tuple[int, int, int, tuple[int, int]]] = []  # item index, first view, end, crop
        for i, it in enumerate(items):
            try:
                v, crop = self._views(it)
            except ItemError as e:
                out[i] = e
                continue
            spans.append((i, len(views), len(views) + len(v), crop))
            views.extend(v)
        emb = self._embed([items[i] for i, *_ in spans], views)
        for i, a, b, crop in spans:
            try:
                out[i] = self._finish(items[i], emb[a:b], crop)
            except ItemError as e:
                out[i] = e
        return out
