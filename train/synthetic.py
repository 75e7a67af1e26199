"""Synthetic tokenized shards: the real shard layout without running the codec or speaker model.

For benchmarks and tests that need shards in the ``accord.core.shards`` contract (tars,
``samples.parquet``, ``index.parquet``, ``lda.npz``) quickly and without model weights; they
are written with tokenize's own writers. Codes follow a per-clip arithmetic pattern
(learnable: a falling loss means the trainer works), embeddings are random, and agreement,
SNR, speaking rate and source dataset vary across clips so stage selection and dataset
weights have something to choose between. A clip's stages follow its agreement alone
(``STAGE_AGREEMENT``): ``tokenize.json`` records those thresholds as the run's eligibility, so
the trainer's read-time eligibility recomputes exactly the flags the samples carry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from accord.core.clip import sample_meta
from accord.core.eligibility import StageThresholds, threshold_overrides
from accord.core.shards import LDA_NPZ, ShardSample, write_index, write_shard, write_tokenize_json
from accord.core.stages import STAGES
from accord.tokenize.lda import LdaProjection

D_SPK = 192  # ECAPA embedding width
FRAMES_PER_SECOND = 86.13  # approximate DAC 44.1 kHz frame rate (kept fixed: golden losses use it)
STAGE_AGREEMENT = dict(zip(STAGES, (0.0, 0.7, 0.9, 0.95), strict=True))  # a stage's only threshold


def clip_sample(i: int, rng: np.random.Generator, n_frames: int) -> ShardSample:
    """Clip ``i`` as a shard sample."""
    clip_id = f"clip{i:04d}"
    base = int(rng.integers(0, 64))
    t = np.arange(n_frames)
    codes = np.stack([(base + t * (k + 1)) % 64 + 16 * k for k in range(9)]).astype(np.int16)
    agreement = float([0.5, 0.8, 0.93, 0.97][i % 4])
    snr = float([15.0, 25.0, 35.0, 45.0][(i // 2) % 4])
    f0 = int(rng.integers(0, max(1, n_frames // 2)))
    row = {
        "clip_id": clip_id,
        "transcripts": [
            {"system": sys, "model": model, "text": text, "normalized": f"sentence {i}", "language": "en"}
            for sys, model, text in (("a", "m1", f"Sentence {i}."), ("b", "m2", f"sentence {i}"))
        ],
        "language": "en",
        "agreement": agreement,
        "n_asr": 2,
        "hallucinated": False,
        **{f"eligible_{s}": agreement >= a for s, a in STAGE_AGREEMENT.items()},
        "speaking_rate": 12.0 + i % 5,
        "snr_db": snr,
        "bandwidth_hz": 16000.0,
        "loudness_lufs": -20.0,
        "source_uri": f"file:///data/{'setA' if i % 3 else 'setB'}/f{i // 4}.wav",
        "source_sha256": "0" * 64,
        "start_s": 0.0,
        "end_s": n_frames / FRAMES_PER_SECOND,
    }
    crop = (f0, min(n_frames, f0 + max(1, n_frames // 3)))
    meta = sample_meta(row, n_frames, crop, ("noise", "reverb"))
    return ShardSample(
        codes=codes,
        spk=rng.standard_normal(D_SPK).astype(np.float32),
        spkcrop=rng.standard_normal(D_SPK).astype(np.float32),
        spkaug=rng.standard_normal((2, D_SPK)).astype(np.float32),
        meta=meta,
    )


def write_synthetic_shards(
    root: str | Path,
    n_clips: int = 24,
    n_shards: int = 3,
    seed: int = 0,
    frames: tuple[int, int] = (20, 60),
) -> Path:
    """Write ``n_clips`` clips (``frames`` = [low, high) code frames each) in ``n_shards`` shards
    plus their index and a random LDA projection under local directory ``root``; returns it."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    samples = [clip_sample(i, rng, int(rng.integers(*frames))) for i in range(n_clips)]
    per = (n_clips + n_shards - 1) // n_shards
    for s in range(n_shards):
        part = samples[s * per : (s + 1) * per]
        write_shard(str(root), s, [p.key for p in part], part)
    write_index(str(root), n_shards)
    thresholds = {s: StageThresholds(min_agreement=a) for s, a in STAGE_AGREEMENT.items()}
    write_tokenize_json(str(root), {"eligibility": threshold_overrides(thresholds)})
    W = rng.standard_normal((8, D_SPK)).astype(np.float32) / np.sqrt(D_SPK)
    lda = LdaProjection(W, np.zeros(8, np.float32), np.zeros(D_SPK, np.float32), np.zeros(8, np.float32))
    lda.save(root / LDA_NPZ)
    return root
