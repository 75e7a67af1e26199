"""Ingest throughput on this machine, against peers measured in the same run (audio s / wall s).

1. accord's decode + VAD + Whisper (the job's own steps and backend, clips batched as the job
   batches them) vs faster-whisper's ``BatchedInferencePipeline`` (its own decoding and VAD,
   batch 16, beam 1) with the same Whisper base int8 model and threads. Goal >= 1.2x.
2. The full ingest (Ray Data graph on local Ray: decode+VAD tasks, one actor pool per ASR
   system, agreement/features/eligibility, per-source commits) vs its slowest model alone on
   the same clips in one process with the model preloaded. Goal >= 0.8x. Ray start-up and
   one warm-up job are excluded (worker processes import their libraries once per cluster);
   each timed job still starts its actors and loads its models.

Runs alternate accord and the peer; each figure is the median over rounds.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def _files(bucket_path: Path) -> list[str]:
    from accord.pipeline.io import list_sources

    return [s.uri for s in list_sources(str(bucket_path)).sources]


def _vad_clips(files: list[str]) -> tuple[list, float]:
    """accord's decode + VAD over the files: clip items, and the sources' total duration."""
    from accord.pipeline.steps import DecodeStep, ItemError, VadStep

    dec, vad = DecodeStep(), VadStep()
    vad.setup()
    clips, total_s = [], 0.0
    for uri in files:
        try:
            item = dec.process({"source_uri": uri})[0]
            total_s += item["source_duration_s"]
            clips.extend(vad.process(item))
        except ItemError:
            continue
    return clips, total_s


def _accord_vad_whisper(files: list[str], whisper, batch: int) -> float:
    t0 = time.perf_counter()
    clips, _ = _vad_clips(files)
    audios = [c["audio_16k"] for c in clips]
    for i in range(0, len(audios), batch):
        whisper.transcribe_batch(audios[i : i + batch])
    return time.perf_counter() - t0


def _peer_batched(files: list[str], pipeline) -> float:
    t0 = time.perf_counter()
    for uri in files:
        try:
            segments, _ = pipeline.transcribe(uri, batch_size=16, beam_size=1)
            for _ in segments:
                pass
        except Exception:  # files with no speech or odd containers: the peer's problem to skip
            continue
    return time.perf_counter() - t0


def _model_alone(backend, audios: list, batch: int) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(audios), batch):
        backend.transcribe_batch(audios[i : i + batch])
    return time.perf_counter() - t0


def _full_ingest(bucket_path: Path, cfg) -> float:
    from accord.pipeline.io import list_sources
    from accord.pipeline.job.plan import build_plan
    from accord.pipeline.job.runner import run_sources
    from accord.pipeline.manifest import ManifestStore
    from accord.pipeline.run_record import RunStats

    out = tempfile.mkdtemp(prefix="bench-ingest-")
    try:
        sources = list_sources(str(bucket_path), cfg.extensions).sources
        t0 = time.perf_counter()
        incomplete = run_sources(sources, ManifestStore(out), build_plan(cfg), cfg, "bench", RunStats())
        dt = time.perf_counter() - t0
        if incomplete:
            raise RuntimeError(f"{len(incomplete)} sources incomplete")
        return dt
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run(quick: bool) -> list[dict]:
    import ray
    import torch
    from accord.pipeline.asr.base import create_backend
    from accord.pipeline.job.config import IngestConfig
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    from accord.samples import make_bucket
    from accord.weights import resolve

    torch.set_num_threads(2)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    bucket = make_bucket(scale=1 if quick else 2)
    files = _files(bucket.path)
    rounds = 2 if quick else 3
    cfg = IngestConfig(num_cpus=2, progress=False)

    # -- 1. VAD + Whisper vs BatchedInferencePipeline ----------------------------------------------
    whisper = create_backend("faster-whisper", "whisper:base")
    whisper.load()
    peer_model = WhisperModel(str(resolve("whisper:base")), device="cpu", compute_type="int8", cpu_threads=2)
    peer = BatchedInferencePipeline(model=peer_model)
    clips, total_s = _vad_clips(files)  # warm-up (and the clips for part 2)
    _peer_batched(files[:1], peer)
    acc_t, peer_t = [], []
    for _ in range(rounds):
        peer_t.append(_peer_batched(files, peer))
        acc_t.append(_accord_vad_whisper(files, whisper, cfg.asr_batch_size or 16))
    acc, base = total_s / statistics.median(acc_t), total_s / statistics.median(peer_t)
    rows = [
        {
            "name": "ingest: VAD + whisper-base vs faster-whisper BatchedInferencePipeline",
            "value": acc,
            "unit": "audio s / wall s",
            "baseline": base,
            "ratio": acc / base,
            "goal": 1.2,
            "note": f"{total_s:.0f} s of audio in {len(files)} files, {rounds} alternating rounds, median; "
            "batch 16, beam 1, int8, 2 threads on both sides",
        }
    ]
    del peer, peer_model

    # -- 2. full ingest vs its slowest model alone --------------------------------------------------
    moonshine = create_backend("moonshine", "moonshine:tiny-en")
    moonshine.load()
    audios = [c["audio_16k"] for c in clips]
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        # Warm-up, the counterpart of preloading the models: Ray's worker processes import
        # their libraries once per cluster, not per job.
        _full_ingest(bucket.path, cfg)
        full_t, w_t, m_t = [], [], []
        for _ in range(rounds):
            full_t.append(_full_ingest(bucket.path, cfg))
            w_t.append(_model_alone(whisper, audios, cfg.asr_batch_size or 16))
            m_t.append(_model_alone(moonshine, audios, cfg.asr_batch_size or 16))
    finally:
        ray.shutdown()
    slowest_name, slowest_t = max(
        (("whisper-base", statistics.median(w_t)), ("moonshine-tiny", statistics.median(m_t))),
        key=lambda kv: kv[1],
    )
    full = total_s / statistics.median(full_t)
    alone = total_s / slowest_t
    rows.append(
        {
            "name": "ingest: full job (local Ray) vs its slowest model alone",
            "value": full,
            "unit": "audio s / wall s",
            "baseline": alone,
            "ratio": full / alone,
            "goal": 0.8,
            "note": f"slowest model: {slowest_name} on the same {len(audios)} VAD clips, preloaded; "
            f"whisper {statistics.median(w_t):.1f} s, moonshine {statistics.median(m_t):.1f} s, "
            f"full job {statistics.median(full_t):.1f} s "
            "(after one warm-up job; actor start-up and model loading included)",
        }
    )
    return rows


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
