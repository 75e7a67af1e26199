"""Ingest throughput on this machine, against peers measured in the same run (audio s / wall s).

1. accord's decode + VAD + Whisper (the job's own steps and backend, clips batched as the job
   batches them) vs faster-whisper's ``BatchedInferencePipeline`` (its own decoding and VAD,
   batch 16, beam 1) with the same Whisper base int8 model and threads. Goal >= 2x.
2. What each model costs per clip with every signal on (issue #28): the job's model steps built
   as the job builds them (one thread each), run in one process in the job's order on the VAD
   clips of a bucket twice part 1's size, one source per call, and silero-vad on the sources'
   decode windows (the job's first model; decoding is not counted). Goal: all models together
   at most 2x Whisper base's own cost, measured beside it.
3. Job efficiency: the full ingest (Ray Data on local Ray, every signal) against the limit any
   scheduler has: the models' cost with every core busy (part 2's measurement in one process
   per core at once: cores that share caches and memory bandwidth run the models slower together
   than one alone), spread over the cores, for each pool layout (``pool_layout``: fused,
   per-model), alternating. Goal >= 0.85 for the layout the default (``auto``) picks on this
   machine; the note gives the ratio over the one-core cost too, measured alongside. Ray
   start-up and one warm-up job per layout are excluded; each timed job still starts its actors
   and loads its models. Also: audio hours per core-hour of the full job.
4. Accuracy on real recordings (issue #20), from one ingest with the defaults.

Each figure is the median over rounds. Run only these rows with
``python -m bench.run --only bench_ingest`` (``--quick`` for the smaller buckets).
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np


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


def vad_inputs(files: list[str], cfg) -> list[list]:
    """Each source's 16 kHz decode windows, as the VAD step feeds them to silero-vad."""
    from accord.core.audio_io import AudioError, iter_windows
    from accord.pipeline.vad import RATE, VadConfig

    window_s = VadConfig(**cfg.steps.get("vad", {})).window_s
    out = []
    for uri in files:
        try:
            out.append([w.audio for w in iter_windows(uri, window_s, RATE)])
        except AudioError:
            continue
    return out


def vad_cost(vad, windows: list[list]) -> float:
    """Seconds silero-vad (the job's first model, in its source step; ``vad`` loaded and warmed
    up with the job's options) spends on the sources' windows: its bare cost, decoding excluded."""
    t0 = time.perf_counter()
    for source in windows:
        vad.reset()
        for audio in source:
            vad(audio)
        vad(np.zeros(0, np.float32), last=True)
    return time.perf_counter() - t0


def model_costs(
    cfg, sources: list[list], windows: list[list], start: Callable[[], None] | None = None
) -> dict[str, float]:
    """Seconds each model spends on ``sources`` (one source's clips per call), run in one
    process in the job's order with the job's options (its threads: one per model on a small
    machine), each step fed the previous one's output as in a fused actor: the bare cost of each
    model, in core-seconds where a step runs one thread. silero-vad (``vad``) runs on the sources'
    decode ``windows``. ``start``: called once every model is loaded and warmed up, before the
    timing (:func:`busy_model_costs` lines its processes up there)."""
    import torch

    from accord.pipeline.job.plan import build_graph, build_plan
    from accord.pipeline.vad import VadConfig, load_vad

    graph = build_graph(build_plan(cfg), replace(cfg, pool_layout="per-model"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the job's actors (Ray sets one OpenMP thread per CPU reserved)
    try:
        vad = load_vad(VadConfig(**cfg.steps.get("vad", {})))
        vad(windows[0][0][:16000])  # warm-up
        stages = [(p.name, p.step.build()) for p in graph.pools]
        _run_stages(stages, sources[0])  # the first call warms each model up
        if start is not None:
            start()
        spent = {"vad": vad_cost(vad, windows), **{name: 0.0 for name, _ in stages}}
        for clips in sources:
            for name, dt in _run_stages(stages, clips).items():
                spent[name] += dt
    finally:
        torch.set_num_threads(threads)
    return spent


def _run_stages(stages: list[tuple[str, Any]], clips: list[dict]) -> dict[str, float]:
    """One source's clips through the model steps in order: seconds per step."""
    items, spent = [dict(c) for c in clips], {}
    for name, step in stages:
        t0 = time.perf_counter()
        out = step.process_batch(items)
        spent[name] = time.perf_counter() - t0
        kept = [o for o in out if not isinstance(o, Exception)]
        items = [x for o in kept for x in (o if isinstance(o, list) else [o])]
    return spent


def _busy_worker(cfg, sources: list[list], windows: list[list], barrier, results) -> None:
    try:
        results.put(model_costs(cfg, sources, windows, start=lambda: barrier.wait(BUSY_TIMEOUT_S)))
    except BaseException as e:  # the parent reports it: a worker must never leave it waiting
        barrier.abort()
        results.put(f"{type(e).__name__}: {e}")


BUSY_TIMEOUT_S = 1800.0


def busy_model_costs(cfg, sources: list[list], windows: list[list], n: int) -> dict[str, float]:
    """:func:`model_costs` with all ``n`` cores busy: ``n`` processes run it at once, started
    together once each has loaded its models, and each model's cost is their mean. This is the
    cost the job's ``n`` actors pay, and the limit any scheduler has on this machine: cores that
    share caches and memory bandwidth run the same models slower together than one alone
    (1.09-1.22x on this 2-core VM, measured), which no pool layout can win back."""
    import multiprocessing as mp
    import queue

    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    args = (cfg, sources, windows, barrier, results)
    procs = [ctx.Process(target=_busy_worker, args=args) for _ in range(n)]
    for pr in procs:
        pr.start()
    got: list = []
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    try:
        while len(got) < n:
            try:
                got.append(results.get(timeout=5.0))
            except queue.Empty:
                dead = [pr.exitcode for pr in procs if pr.exitcode not in (None, 0)]
                if dead or time.monotonic() > deadline:  # killed (OOM) or stuck: never wait forever
                    what = f"a worker died (exit {dead[0]})" if dead else f"none in {BUSY_TIMEOUT_S:.0f} s"
                    raise RuntimeError(f"busy_model_costs: {what}") from None
    finally:
        for pr in procs:
            pr.join(timeout=30)
            if pr.is_alive():
                pr.kill()
    errors = [g for g in got if isinstance(g, str)]
    if errors:
        raise RuntimeError(f"busy_model_costs: {errors[0]}")
    return {name: statistics.fmean(g[name] for g in got) for name in got[0]}


def _dnsmos_precision(cfg) -> str:
    """The precision DNSMOS's network runs at in this run (``auto`` resolved on this machine)."""
    from accord.pipeline.dnsmos import DnsmosConfig, resolve_precision
    from accord.pipeline.job.plan import signal_spec

    return resolve_precision(DnsmosConfig(**signal_spec(cfg, "dnsmos").kwargs))


def _cost_rows(cfg, runs: list[dict[str, float]], n_clips: int) -> list[dict]:
    """Per-model cost per clip, and the models' cost against Whisper base's (goal: at most 2x),
    from :func:`model_costs` ``runs`` (the one-core runs measured between the efficiency jobs)."""
    med = {name: statistics.median(r[name] for r in runs) for name in runs[0]}
    total = sum(med.values())
    whisper = med.get("asr:faster-whisper", math.nan)
    per = {name: 1000 * t / max(1, n_clips) for name, t in med.items()}
    rows = [
        {
            "name": f"ingest: {name} cost per clip (every signal on)",
            "value": ms,
            "unit": "ms/clip",
            "note": f"one thread, as the job builds it; median of {len(runs)}; {n_clips} VAD clips"
            + (f"; P.835 in {_dnsmos_precision(cfg)}" if name == "dnsmos" else ""),
        }
        for name, ms in per.items()
    ]
    rows.append(
        {
            "name": "ingest: Whisper base's share of the models' cost per clip (every signal on)",
            "value": 1000 * total / max(1, n_clips),
            "unit": "ms/clip (all models)",
            "baseline": 1000 * whisper / max(1, n_clips),
            "ratio": whisper / total,
            "goal": 0.5,
            "note": f"all models cost {total / whisper:.2f}x Whisper base's own cost per clip (goal <= 2x, "
            "i.e. share >= 0.5), measured in the same process on the same clips: "
            + ", ".join(f"{n} {ms:.0f} ms" for n, ms in per.items()),
        }
    )
    return rows


def _efficiency_rows(
    bucket_path: Path, cfg, sources: list[list], windows: list[list], total_s: float, n_clips: int,
    rounds: int,
) -> tuple[list[dict], list[dict[str, float]]]:  # fmt: skip
    """The full job (local Ray) in each pool layout against the limit any scheduler has: the
    models' cost with every core busy (:func:`busy_model_costs`) spread over the cores; beside it
    the same over each model's cost on one core alone. Layouts and both measurements alternate
    (the machine drifts); each layout had one warm-up job. Also returns the one-core runs
    (:func:`_cost_rows` reads them: measured once, not again apart)."""

    import ray

    from accord.pipeline.job.plan import build_graph, build_plan

    ncpu = int(cfg.num_cpus or os.cpu_count() or 1)
    layouts = ("fused", "per-model")
    memory_mb = float(ray.cluster_resources().get("memory", 0.0)) / 2**20 or None
    chosen = build_graph(build_plan(cfg), cfg, float(ncpu), memory_mb).pools  # what the default picks here
    default_layout = "fused" if len(chosen) == 1 and chosen[0].then else "per-model"
    cfgs = {lay: replace(cfg, pool_layout=lay) for lay in layouts}
    for lay in layouts:
        _full_ingest(bucket_path, cfgs[lay])  # warm-up: Ray's workers import their libraries once
    walls: dict[str, list[float]] = {lay: [] for lay in layouts}
    busy_runs: list[dict[str, float]] = []
    solo_runs: list[dict[str, float]] = []
    for _ in range(rounds):
        for lay in layouts:
            walls[lay].append(_full_ingest(bucket_path, cfgs[lay]))
        solo_runs.append(model_costs(cfg, sources, windows))
        busy_runs.append(busy_model_costs(cfg, sources, windows, ncpu))
    busy = {name: statistics.median(r[name] for r in busy_runs) for name in busy_runs[0]}
    solo = {name: statistics.median(r[name] for r in solo_runs) for name in solo_runs[0]}
    cost, solo_cost = sum(busy.values()), sum(solo.values())
    limit = cost / ncpu
    rows = [
        {
            "name": f"ingest: models' cost with all {ncpu} cores busy vs one core alone",
            "value": cost,
            "unit": "core s",
            "baseline": solo_cost,
            "ratio": cost / solo_cost,
            "note": f"{ncpu} processes run every model at once on the same {n_clips} clips, one alone, "
            f"alternating with the jobs below (median of {rounds}); each model's cost busy / alone: "
            + ", ".join(f"{n} {busy[n] / solo[n]:.2f}" for n in busy if solo.get(n))
            + "; what the job's actors pay, which no scheduler wins back",
        }
    ]
    for lay in layouts:
        wall = statistics.median(walls[lay])
        default = lay == default_layout
        rows.append(
            {
                "name": f"ingest: job efficiency, every signal, {ncpu} cores, {lay} pools"
                + (" (the default here)" if default else ""),
                "value": limit,
                "unit": "s (models' cost / cores)",
                "baseline": wall,
                "ratio": limit / wall,
                "goal": 0.85 if default else None,
                "note": f"the limit: {cost:.1f} s of model cost with every core busy on {n_clips} clips "
                f"({total_s:.0f} s of audio) over {ncpu} cores = {limit:.1f} s; full job {wall:.1f} s wall "
                f"(median of {rounds}, after one warm-up job; actor start-up and model loading included); "
                f"over the models' cost on one core alone ({solo_cost:.1f} s / {ncpu}): "
                f"{solo_cost / ncpu / wall:.2f}",
            }
        )
        if default:
            rows.append(
                {
                    "name": "ingest: audio hours per core-hour, every signal (full job)",
                    "value": total_s / (wall * ncpu),
                    "unit": "audio h / core h",
                    "note": f"{total_s:.0f} s of audio in {wall:.1f} s on {ncpu} cores ({lay} pools); the "
                    f"models alone: {total_s / cost:.1f} audio h per core h with every core busy, "
                    f"{total_s / solo_cost:.1f} on one core alone",
                }
            )
    return rows, solo_runs


def _real_accuracy(cfg) -> list[dict]:
    """Accuracy rows on real recordings (issue #20), from one ingest of :func:`make_real`'s corpus
    with the defaults: what the speed rows' job gets right, measured beside them."""
    from accord.core.eligibility import failures, load_thresholds
    from accord.core.manifest import ManifestStore, read_manifest
    from accord.core.runs import RunStats
    from accord.pipeline.job.plan import build_plan
    from accord.pipeline.job.runner import run_sources
    from accord.pipeline.sources import list_sources
    from accord.samples.real import holds_a_turn, make_real

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
    # a clip where two voices talk 1 s or more each must be refused; a join split within 0.5 s
    # of its change into parts that each pass is right too (the split, not a refusal)
    two = [r for t, r in by if holds_a_turn(t, r["start_s"], r["end_s"])]

    def refused(r: dict) -> bool:
        return bool(gates & set(failures(r, th["anneal1"])))

    one_pass = sum(not refused(r) for r in one)
    two_fail = sum(refused(r) for r in two)
    joins = {
        n: sorted((r for _, r in by if Path(r["source_uri"]).name == n), key=lambda r: r["start_s"])
        for n, t in real.truth.items()
        if t["kind"] == "join"
    }
    split_ok = sum(
        len(rs) == 2
        and abs(rs[0]["end_s"] - real.truth[n]["change_s"]) <= 0.5
        and not any(refused(r) for r in rs)
        for n, rs in joins.items()
    )
    split_one = min((r["speaker_split_sim"] for r in one), default=float("nan"))
    split_two = max((r["speaker_split_sim"] for r in two), default=float("nan"))  # nan: none held a turn
    n_lang = len({t["language"] for t, _ in speech})
    where = f"{len(sources)} sources, {len(rows)} clips, {n_lang} languages, {wall:.0f} s wall"
    name = "ingest accuracy (real recordings): "

    def row(what: str, value: float, unit: str, note: str, **goal: float) -> dict:
        return {"name": name + what, "value": value, "unit": unit, "note": note, **goal}

    return [
        row("share of VAD speech that reaches the manifest", round(kept_s / vad_s, 6), "fraction",
            f"{kept_s:.0f} of {vad_s:.0f} s; sources incomplete or to retry {len(incomplete)}; {where}",
            target=1.0),
        row("clip language ID right", lid_ok / len(speech), "fraction",
            f"{lid_ok}/{len(speech)} clips; the text language confirms {confirmed} of the right ones"),
        row("wrong-language clips eligible for pretrain", float(wrong), "clips",
            "audio language wrong, or the text in another language, yet eligible (goal 0)"),
        row("SNR error on the white/babble ladder (max)", max(ladder), "dB",
            f"{len(ladder)} clips at 0-30 dB, median {statistics.median(ladder):.1f} dB (goal <= 3)"),
        row("speaker gates: one voice kept, two voices refused",
            (one_pass + two_fail + split_ok) / max(1, len(one) + len(two) + len(joins)), "fraction",
            f"one-speaker clips passing anneal1's speaker gates {one_pass}/{len(one)}, clips holding "
            f"two voices refused {two_fail}/{len(two)}, joined readers split at the change "
            f"{split_ok}/{len(joins)}; "
            f"speaker_split_sim lowest one-voice {split_one:.2f} vs highest two-voice {split_two:.2f}",
            target=1.0),
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
    cfg = IngestConfig(num_cpus=os.cpu_count() or 1, progress=False)

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
            "goal": 2.0,
            "note": f"{total_s:.0f} s of audio in {len(files)} files, {rounds} alternating rounds, median; "
            "peer batch 16, beam 1; accord packs one source's clips per call, as the job does; "
            "int8, 2 threads on both sides",
        }
    ]
    del peer, peer_model

    # -- 2. what the models cost, and how close the full job comes to the limit -----------------
    del whisper
    big = make_bucket(scale=2 if quick else 4)
    big_files = _files(big.path)
    clips, big_s = _vad_clips(big_files)
    sources, windows = _by_source(clips), vad_inputs(big_files, cfg)
    init_ray(num_cpus=cfg.num_cpus)
    try:
        efficiency, solo_runs = _efficiency_rows(big.path, cfg, sources, windows, big_s, len(clips), rounds)
        rows.extend(_cost_rows(cfg, solo_runs, len(clips)))
        rows.extend(efficiency)
        rows.extend(_real_accuracy(cfg))
    finally:
        import ray

        ray.shutdown()
    return rows


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
