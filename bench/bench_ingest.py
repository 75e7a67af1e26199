"""Ingest throughput on this machine, against peers measured in the same run (audio s / wall s).

1. accord's decode + VAD + Whisper (the job's own steps and backend, clips batched as the job
   batches them) vs faster-whisper's ``BatchedInferencePipeline`` (its own decoding and VAD,
   batch 16, beam 1) with the same Whisper base int8 model and threads. Goal >= 1.2x.
2. The full ingest (Ray Data graph on local Ray: decode+VAD tasks, one actor pool per model:
   language ID, each ASR system, DNSMOS, speaker consistency; agreement/checks/features/
   eligibility; per-source commits) vs its slowest model alone on the same clips in one
   process with the model preloaded, called as the job calls it (one source's clips per call).
   Goal >= 0.85x (issue #15). Ray start-up and one warm-up job are excluded (worker processes
   import their libraries once per cluster); each timed job still starts its actors and loads
   its models, so this part runs on a bucket twice the size of part 1's to weigh that fixed
   cost less. The same comparison with the ASR systems alone (``signals: []``) is reported
   beside it, and so is what each model costs per clip.

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
    from accord.pipeline.sources import list_sources

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


def _accord_vad_whisper(files: list[str], whisper) -> float:
    """Decode + VAD + Whisper as the job runs them: one source's clips per call."""
    t0 = time.perf_counter()
    clips, _ = _vad_clips(files)
    _model_alone(whisper, _by_source(clips))
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


def _by_source(clips: list) -> list[list]:
    out: dict[str, list] = {}
    for c in clips:
        out.setdefault(c["source_uri"], []).append(c)
    return list(out.values())


def _model_alone(model, sources: list[list]) -> float:
    """The model over the clips as the job's actors call it: one source's clips per call. An ASR
    backend transcribes them; a signal step (language ID, DNSMOS, speaker) scores them."""
    t0 = time.perf_counter()
    for clips in sources:
        if hasattr(model, "transcribe_batch"):
            model.transcribe_batch([c["audio_16k"] for c in clips], groups=[c["source_uri"] for c in clips])
        else:
            model.process_batch(clips)
    return time.perf_counter() - t0


def _full_ingest(bucket_path: Path, cfg) -> float:
    from accord.core.manifest import ManifestStore
    from accord.core.runs import RunStats
    from accord.pipeline.job.plan import build_plan
    from accord.pipeline.job.runner import run_sources
    from accord.pipeline.sources import list_sources

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


def _full_vs_alone(bucket_path: Path, cfg, backends: dict, rounds: int, goal: float | None) -> dict:
    """One row: the full job on local Ray vs each model alone on the job's clips, alternating."""
    clips, total_s = _vad_clips(_files(bucket_path))
    sources = _by_source(clips)
    _full_ingest(bucket_path, cfg)  # warm-up: Ray's workers import their libraries once per cluster
    full_t: list[float] = []
    alone_t: dict[str, list[float]] = {name: [] for name in backends}
    for _ in range(rounds):
        full_t.append(_full_ingest(bucket_path, cfg))
        for name, backend in backends.items():
            alone_t[name].append(_model_alone(backend, sources))
    med = {name: statistics.median(t) for name, t in alone_t.items()}
    slowest = max(med, key=med.get)
    full = total_s / statistics.median(full_t)
    alone = total_s / med[slowest]
    times = ", ".join(f"{n} {t:.1f} s ({1000 * t / max(1, len(clips)):.0f} ms/clip)" for n, t in med.items())
    what = "with every signal" if cfg.signals else "ASR systems only (signals: [])"
    return {
        "name": f"ingest: full job {what} (local Ray) vs its slowest model alone"
        + ("" if goal else f" ({total_s / 60:.0f} min bucket)"),
        "value": full,
        "unit": "audio s / wall s",
        "baseline": alone,
        "ratio": full / alone,
        "goal": goal,
        "note": f"{total_s:.0f} s of audio, {len(clips)} VAD clips in {len(sources)} sources; slowest: "
        f"{slowest}, preloaded, one source per call as in the job; {times}, "
        f"full job {statistics.median(full_t):.1f} s (median of {rounds}, after one warm-up job; "
        "actor start-up and model loading included)",
    }


def _real_accuracy(cfg) -> list[dict]:
    """Accuracy rows on real recordings (issue #20), from one ingest of :func:`make_real`'s corpus
    with the defaults: what the speed rows' job gets right, measured beside them."""
    from accord.core.eligibility import failures, load_thresholds
    from accord.core.manifest import ManifestStore, read_manifest
    from accord.core.runs import RunStats
    from accord.pipeline.job.plan import build_plan
    from accord.pipeline.job.runner import run_sources
    from accord.pipeline.sources import list_sources
    from accord.samples.real import make_real

    real = make_real()
    out = tempfile.mkdtemp(prefix="bench-real-")
    try:
        sources = list_sources(str(real.path), cfg.extensions).sources
        stats = RunStats()
        t0 = time.perf_counter()
        incomplete = run_sources(sources, ManifestStore(out), build_plan(cfg), cfg, "bench", stats)
        wall = time.perf_counter() - t0
        rows = read_manifest(out).to_pylist()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    vad_s = sum(c["duration_s"] for c in _vad_clips([str(real.path / n) for n in real.truth])[0])
    kept_s = sum(r["duration_s"] for r in rows)
    by = [(real.truth[Path(r["source_uri"]).name], r) for r in rows]
    speech = [(t, r) for t, r in by if t["language"]]
    lid_ok = sum(r["language"] == t["language"] for t, r in speech)
    confirmed = sum(r["language_check"] == "agrees" for t, r in speech if r["language"] == t["language"])
    wrong = sum(
        r["eligible_pretrain"]
        for t, r in speech
        if r["language"] != t["language"] or r["language_check"] == "differs"
    )
    ladder = [abs(r["snr_db"] - t["snr_db"]) for t, r in by if t["kind"] == "noisy"]
    th = load_thresholds()
    gates = {"min_speaker_consistency", "min_speaker_split_sim"}
    one = [r for t, r in by if t["speakers"] == 1 and t["kind"] == "recording" and r["duration_s"] >= 3]
    two = [r for t, r in by if t["kind"] == "join"]
    one_pass = sum(not gates & set(failures(r, th["anneal1"])) for r in one)
    two_fail = sum(bool(gates & set(failures(r, th["anneal1"]))) for r in two)
    split_one = min((r["speaker_split_sim"] for r in one), default=float("nan"))
    split_two = max((r["speaker_split_sim"] for r in two), default=float("nan"))
    n_lang = len({t["language"] for t, _ in speech})
    where = f"{len(sources)} sources, {len(rows)} clips, {n_lang} languages, {wall:.0f} s wall"
    name = "ingest accuracy (real recordings): "

    def row(what: str, value: float, unit: str, note: str, **goal: float) -> dict:
        return {"name": name + what, "value": value, "unit": unit, "note": note, **goal}

    return [
        row("share of VAD speech that reaches the manifest", kept_s / vad_s, "fraction",
            f"{kept_s:.0f} of {vad_s:.0f} s; sources incomplete or to retry {len(incomplete)}; {where}",
            target=1.0),
        row("clip language ID right", lid_ok / len(speech), "fraction",
            f"{lid_ok}/{len(speech)} clips; the text language confirms {confirmed} of the right ones"),
        row("wrong-language clips eligible for pretrain", float(wrong), "clips",
            "audio language wrong, or the text in another language, yet eligible (goal 0)"),
        row("SNR error on the white/babble ladder (max)", max(ladder), "dB",
            f"{len(ladder)} clips at 0-30 dB, median {statistics.median(ladder):.1f} dB (goal <= 3)"),
        row("speaker gates: one voice kept, two voices refused",
            (one_pass + two_fail) / max(1, len(one) + len(two)), "fraction",
            f"one-speaker clips passing anneal1's speaker gates {one_pass}/{len(one)}, joined real "
            f"voices refused {two_fail}/{len(two)}; speaker_split_sim lowest one-voice {split_one:.2f} vs "
            f"highest two-voice {split_two:.2f}", target=1.0),
    ]  # fmt: skip


def run(quick: bool, device: str = "cpu") -> list[dict]:
    import torch
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    from accord.core.weights import resolve
    from accord.jobs.ray_init import init_ray
    from accord.pipeline.asr.base import create_backend
    from accord.pipeline.job.config import IngestConfig
    from accord.samples import make_bucket

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
    _, total_s = _vad_clips(files)  # warm-up
    _peer_batched(files[:1], peer)
    acc_t, peer_t = [], []
    for _ in range(rounds):
        peer_t.append(_peer_batched(files, peer))
        acc_t.append(_accord_vad_whisper(files, whisper))
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
            "peer batch 16, beam 1; accord packs one source's clips per call, as the job does; "
            "int8, 2 threads on both sides",
        }
    ]
    del peer, peer_model

    # -- 2. full ingest vs its slowest model alone --------------------------------------------------
    from dataclasses import replace

    from accord.pipeline.job.plan import build_plan

    moonshine = create_backend("moonshine", "moonshine:tiny-en")
    moonshine.load()
    asr_models = {"whisper-base": whisper, "moonshine-tiny": moonshine}
    # the signal steps exactly as the job builds them (its defaults: threads, one DNSMOS window)
    signals = {name: spec.build() for name, spec in build_plan(cfg).signals.items()}
    big = make_bucket(scale=2 if quick else 4)
    init_ray(num_cpus=cfg.num_cpus)
    try:
        rows.append(_full_vs_alone(big.path, cfg, {**asr_models, **signals}, rounds, goal=0.85))
        asr_only = replace(cfg, signals=())
        rows.append(_full_vs_alone(big.path, asr_only, asr_models, rounds, goal=None))
        rows.extend(_real_accuracy(cfg))
    finally:
        import ray

        ray.shutdown()
    return rows


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
