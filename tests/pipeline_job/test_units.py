"""Fast tests of the job machinery without Ray: accounting, commits, config, plan, cluster helpers."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import pytest

from accord.core.manifest import ManifestStore, Source, read_errors, read_manifest, to_row
from accord.jobs.driver import drive
from accord.jobs.rows import (
    ERROR,
    ITEM,
    UNIT,
    UnitTracker,
    finish_rows,
    iter_unit,
    pack,
    process_rows,
    unpack,
)
from accord.jobs.step import ItemError, Step
from accord.pipeline.cluster import SubmitConfig, build_runtime_env, dashboard_address, strip_option
from accord.pipeline.job.config import IngestConfig
from accord.pipeline.job.dry_run import estimate
from accord.pipeline.job.plan import build_graph, build_plan
from accord.pipeline.job.runner import source_unit


class Split(Step):
    """Source step: one source -> ``n`` clips (``n`` from the URI), or a failure."""

    name = "split"

    def process(self, item):
        uri = item["source_uri"]
        if "bad" in uri:
            raise ItemError("decode", "not_audio", "no demuxer")
        n = int(Path(uri).stem.split("_")[-1])
        return [{**item, "clip_id": f"{uri}#{i}", "start_s": float(i), "end_s": i + 0.5, "audio": [0.0] * 4}
                for i in range(n)]  # fmt: skip


class Flaky(Step):
    """A post-VAD step with every behaviour a real one may show: fail, crash, drop, split."""

    name = "flaky"

    def process(self, item):
        i = int(item["clip_id"].rsplit("#", 1)[1])
        if i == 1:
            raise ItemError("asr:x", "timeout", "too slow")
        if i == 2:
            raise ZeroDivisionError("boom")
        if i == 3:
            return []
        if i == 4:
            return [{**item, "part": 0}, {**item, "part": 1}]
        return [{**item, "text": "ok"}]

    def process_batch(self, items):
        if any(it["clip_id"].endswith(("#1", "#2")) for it in items):
            raise RuntimeError("one bad clip spoils the batch")
        return [self.process(it)[0] for it in items]


def _src(uri: str):
    return source_unit(Source.make(uri, 1, "1"))


def process_source(steps, unit) -> list[dict]:
    return list(iter_unit(steps, unit))


class Collect:
    """A sink that keeps everything, per unit."""

    def __init__(self) -> None:
        self.items: dict[str, list] = {}
        self.errors: dict[str, list] = {}
        self.done: dict[str, dict] = {}
        self.lost: list[str] = []

    def item(self, key, item):
        self.items.setdefault(key, []).append(item)

    def error(self, key, error):
        self.errors.setdefault(key, []).append(error)

    def complete(self, key, summary):
        self.done[key] = summary

    def incomplete(self, key):
        self.lost.append(key)


def test_per_item_failures_are_isolated_and_every_source_completes() -> None:
    a, bad = _src("/b/a_6.wav"), _src("/b/bad_3.wav")
    rows = process_source([Split()], a) + process_source([Split()], bad)
    rows = process_rows(Flaky(), rows, batched=True)
    rows = finish_rows(rows)
    sink = Collect()
    result = drive([[r] for r in reversed(rows)], [a.key, bad.key], sink)  # any arrival order works
    assert sorted(result.completed) == sorted([a.key, bad.key]) and result.incomplete == sink.lost == []
    summary, items, errors = sink.done[a.key], sink.items[a.key], sink.errors[a.key]
    assert summary["n_expected"] == 6
    assert sink.done[bad.key]["n_expected"] == 1 and bad.key not in sink.items
    assert [e["error_type"] for e in sink.errors[bad.key]] == ["not_audio"]
    kinds = sorted((e["step"], e["error_type"]) for e in errors)
    assert kinds == [("asr:x", "timeout"), ("flaky", "ZeroDivisionError"), ("flaky", "dropped")]
    crash = next(e for e in errors if e["error_type"] == "ZeroDivisionError")
    assert "boom" in crash["reason"] and crash["clip_id"] == "/b/a_6.wav#2"
    assert sorted(it["clip_id"][-1] + str(it.get("part", "")) for it in items) == ["0", "40", "41", "5"]
    assert all("audio" in it for it in items)  # lists are kept; arrays are what finish_rows drops


def test_a_source_is_not_complete_until_its_last_clip() -> None:
    rows = process_source([Split()], _src("/b/a_2.wav"))
    kinds = [r["kind"] for r in rows]
    assert kinds == [ITEM, ITEM, UNIT]
    sink = Collect()
    drive([[rows[2], rows[0]]], [], sink)
    assert sink.done == {}, "one clip still in flight"
    tracker = UnitTracker()
    assert not tracker.add("k", UNIT, summary={"n_expected": 1})
    assert not tracker.add("k", ITEM, Fraction(1, 2)) and tracker.add("k", ERROR, Fraction(1, 2))
    row = rows[1]
    assert drive([[rows[2], rows[0]], [row]], [row["key"], "other"], sink).incomplete == ["other"]
    assert list(sink.done) == [row["key"]] and sink.lost == ["other"]


def test_finish_rows_drops_arrays() -> None:
    import numpy as np

    item = {"clip_id": "c", "audio_16k": np.zeros(10, np.float32), "_tmp": 1, "x": 2}
    [(item, w)] = unpack(finish_rows([pack("k", ITEM, [(item, Fraction(1))])])[0])
    assert item == {"clip_id": "c", "x": 2} and w == 1


def _clip(uri: str, i: int, **kw) -> dict:
    return to_row(
        {"clip_id": f"{uri}#{i}", "source_uri": uri, "start_s": float(i), "end_s": i + 1.0, "duration_s": 1.0,
         "language": "en", "agreement": 0.95, "n_asr": 2, "speaking_rate": 15.0, "snr_db": 30.0, **kw},
        "run1",
    )  # fmt: skip


def test_commit_resume_and_changed_sources(tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    ms = ManifestStore(out)
    a, b = Source.make("/r/a.wav", 10, "10;mtime=1"), Source.make("/r/b.wav", 10, "10;mtime=1")
    ms.commit(b, [_clip(b.uri, 1), _clip(b.uri, 0)], [], "run1")
    ms.commit(a, [_clip(a.uri, 0)], [{**_err(a.uri)}], "run1")
    todo, done = ManifestStore(out).pending([a, b])
    assert todo == [] and done == [a, b]
    t = read_manifest(out, reapply=False)
    names = [Path(u).name for u in t["source_uri"].to_pylist()]
    assert list(zip(names, t["start_s"].to_pylist(), strict=True)) == [
        ("a.wav", 0.0),
        ("b.wav", 0.0),
        ("b.wav", 1.0),
    ]
    assert len(read_errors(out)) == 1
    # a changes: pending again; committing it replaces its part and clears its old errors
    a2 = Source.make(a.uri, 12, "12;mtime=2")
    ms2 = ManifestStore(out)
    assert ms2.pending([a2, b])[0] == [a2]
    ms2.commit(a2, [_clip(a.uri, 0), _clip(a.uri, 1)], [], "run2")
    assert len(read_manifest(out, reapply=False)) == 4 and len(read_errors(out)) == 0
    markers = list((tmp_path / "out" / "_state" / "done").glob("*.json"))
    assert len(markers) == 2 and ManifestStore(out).pending([a2, b])[0] == []
    assert (
        json.loads(next(m for m in markers if a.key in m.name).read_text())["fingerprint"] == a2.fingerprint
    )
    (tmp_path / "out" / "manifest" / ".tmp-dead-part.parquet").write_bytes(b"half")
    assert len(read_manifest(out, reapply=False)) == 4  # readers never see temp files
    assert ms2.clean_temp() == 1


def test_a_source_with_a_failure_a_rerun_may_clear_is_not_done(tmp_path: Path) -> None:
    """A clip lost to a model failure (an error that is not about the input's own data) keeps its
    source pending, even under a completion marker an older accord wrote: the next run retries."""
    out = str(tmp_path / "out")
    ms = ManifestStore(out)
    a, b = Source.make("/r/a.wav", 10, "10;mtime=1"), Source.make("/r/b.wav", 10, "10;mtime=1")
    failed = {**_err(a.uri), "step": "asr", "error_type": "all_systems_failed", "clip_id": "c"}
    ms.commit(a, [_clip(a.uri, 0)], [failed], "run1")  # as accord <= 0.1 did: marked done
    ms.commit(b, [_clip(b.uri, 0)], [_err(b.uri)], "run1")  # a data error: final
    todo, done = ManifestStore(out).pending([a, b])
    assert todo == [a] and done == [b]


def _err(uri: str) -> dict:
    return {
        "input_uri": uri,
        "clip_id": None,
        "step": "vad",
        "error_type": "decode_error",
        "reason": "r",
        "run_id": "run1",
    }


def test_reapplied_eligibility_uses_current_thresholds(tmp_path: Path) -> None:
    out = str(tmp_path / "o")
    s = Source.make("/r/a.wav", 1, "1")
    ms = ManifestStore(out)
    rows = [_clip(s.uri, 0, eligible_anneal2=True), _clip(s.uri, 1, agreement=0.2, eligible_anneal2=True)]
    ms.commit(s, rows, [], "r")
    t = read_manifest(out)  # the recorded True flags are recomputed (both lack SNR etc.)
    assert t["eligible_anneal2"].to_pylist() == [False, False]
    t = read_manifest(out, thresholds={"pretrain": {"min_agreement": 0.9}})
    assert t["eligible_pretrain"].to_pylist() == [True, False]
    assert len(read_manifest(out, stage="pretrain", thresholds={"pretrain": {"min_agreement": 0.9}})) == 1
    assert len(read_manifest(out, lang="de")) == 0
    with pytest.raises(ValueError, match="unknown stage"):
        read_manifest(out, stage="finetune")


def test_config_from_yaml_and_validation(tmp_path: Path) -> None:
    p = tmp_path / "run.yaml"
    p.write_text("ingest:\n  asr: faster-whisper\n  asr_batch_size: 4\n  steps: {vad: {pad_s: 0.1}}\n")
    cfg = IngestConfig.from_yaml(str(p))
    assert cfg.asr == ("faster-whisper",) and cfg.asr_batch_size == 4 and cfg.steps["vad"]["pad_s"] == 0.1
    with pytest.raises(ValueError, match="unknown ingest config keys"):
        IngestConfig.from_dict({"asr_batchsize": 3})
    with pytest.raises(ValueError, match="not registered"):
        IngestConfig(asr=("whisperx",)).validate()
    with pytest.raises(ValueError, match="nemo"):
        IngestConfig(asr=("nemo",)).validate()


def test_plan_pools_and_step_configs() -> None:
    cfg = IngestConfig(steps={"vad": {"pad_s": 0.1}, "asr:faster-whisper": {"batch_size": 4}},
                       eligibility={"anneal1": {"min_agreement": 0.9}})  # fmt: skip
    plan = build_plan(cfg)
    assert list(plan.asr) == ["faster-whisper", "moonshine"]
    fw = plan.asr["faster-whisper"].kwargs["backends"][0]
    # threads follow the actor's CPU reservation (0.5 -> 1) unless the config sets them
    assert fw == {
        "backend": "faster-whisper",
        "model": "whisper:base",
        "options": {"batch_size": 4, "threads": 1},
        "system": "faster-whisper",
        "languages": None,  # the backend's own (Whisper base: any)
    }
    ms = plan.asr["moonshine"].kwargs["backends"][0]
    assert ms["options"] == {"threads": 1}
    big = build_plan(IngestConfig(asr_num_cpus=4, steps={"asr:moonshine": {"threads": 2}}))
    assert big.asr["faster-whisper"].kwargs["backends"][0]["options"] == {"threads": 4}
    assert big.asr["moonshine"].kwargs["backends"][0]["options"] == {"threads": 2}
    vad = plan.source[1].build()
    assert vad.config.pad_s == 0.1
    elig = plan.post[-1].build()
    assert elig.thresholds["anneal1"].min_agreement == 0.9
    cfg.asr_pools = "shared"
    shared = build_plan(cfg)
    assert list(shared.asr) == ["asr"] and len(shared.asr["asr"].kwargs["backends"]) == 2
    # the signals: LID routes the ASR pools, so its pool runs first; DNSMOS scores one window
    order = ["speaker_consistency", "lid", "asr:faster-whisper", "asr:moonshine", "dnsmos"]
    cfg.pool_layout = "per-model"
    assert [p.name for p in build_graph(plan, cfg).pools] == order  # one pool per model
    cfg.pool_layout = "fused"  # every model in each actor, in the same order
    assert [p.name for p in build_graph(plan, cfg).pools[0].stages()] == order
    assert plan.signals["dnsmos"].kwargs == {"max_windows": 1, "batch_windows": 2, "threads": 1}
    assert plan.signals["lid"].build().config.threads == 1
    assert [s.label for s in plan.post] == [
        "AgreementStep", "TextLanguageStep", "FeatureStep", "TranscriptCheckStep", "EligibilityStep"
    ]  # fmt: skip
    assert list(build_plan(IngestConfig(signals=("dnsmos",))).signals) == ["dnsmos"]
    assert IngestConfig.from_dict({"signals": "lid,dnsmos"}).signals == ("lid", "dnsmos")
    with pytest.raises(ValueError, match="unknown signal"):
        IngestConfig(signals=("mos",)).validate()


def test_per_language_systems_in_the_run_config() -> None:
    """Two NeMo models are two systems: each names its backend, model and languages."""
    cfg = IngestConfig.from_dict(
        {
            "asr": "faster-whisper,moonshine,nemo-de",
            "asr_backends": {"nemo-de": "nemo"},
            "asr_models": {"nemo-de": "nemo:/models/de.nemo"},
            "asr_languages": {"nemo-de": ["de"], "moonshine": ["en"]},
        }
    )
    plan = build_plan(cfg)
    de = plan.asr["nemo-de"].kwargs["backends"][0]
    assert (de["backend"], de["model"], de["system"], de["languages"]) == (
        "nemo", "nemo:/models/de.nemo", "nemo-de", ["de"]
    )  # fmt: skip
    with pytest.raises(ValueError, match="not registered"):
        IngestConfig(asr=("parakeet",), asr_models={"parakeet": "x"}).validate()
    with pytest.raises(ValueError, match="not in asr"):
        IngestConfig(asr_languages={"nemo-de": ["de"]}).validate()


def test_cluster_helpers_never_forward_secrets() -> None:
    assert dashboard_address("http://h:8265") == "http://h:8265"
    assert dashboard_address("ray://head:10001") == "http://head:8265"
    assert dashboard_address("h:9000") == "http://h:9000"
    with pytest.raises(ValueError):
        dashboard_address("grpc://h:1")
    assert strip_option(["a", "--address", "x", "--address=y", "b"], "--address") == ["a", "b"]
    environ = {"AWS_SECRET_ACCESS_KEY": "s", "AWS_ACCESS_KEY_ID": "k", "RAY_AUTH_TOKEN": "t",
               "ACCORD_MODELS": "/m", "HOME": "/root", "AWS_ENDPOINT_URL": "http://minio:9000"}  # fmt: skip
    env = build_runtime_env(SubmitConfig(address="http://h:8265", env={"X": "1"}), environ)
    # where an S3-compatible store is travels with the job; how to get in never does
    assert env == {"env_vars": {"ACCORD_MODELS": "/m", "AWS_ENDPOINT_URL": "http://minio:9000", "X": "1"}}


def test_dry_run_estimate_math() -> None:
    cfg = IngestConfig(
        rtfx={"decode+vad": 50.0, "faster-whisper": 25.0, "moonshine": 20.0}, clips_per_hour=600, signals=()
    )
    e = estimate(3600.0, cfg, cpus=2)
    assert e["hours"] == 1.0 and e["clips"] == 600
    assert e["core_seconds_by_step"] == {"decode+vad": 72.0, "faster-whisper": 144.0, "moonshine": 180.0}
    assert math.isclose(e["wall_hours_at_cpus"], (72 + 144 + 180) / 3600 / 2)


class Streaming(Step):
    """Yields clips one by one, logging each; fails after two when the name says so."""

    name = "stream"

    def __init__(self) -> None:
        self.log: list[str] = []

    def process(self, item):
        return list(self.iter_process(item))

    def iter_process(self, item):
        for i in range(3):
            if i == 2 and "bad" in item["source_uri"]:
                raise RuntimeError("decoder died mid-file")
            self.log.append(f"made {i}")
            yield {**item, "clip_id": f"{item['source_uri']}#{i}"}


def test_source_rows_stream_out_as_steps_yield_them() -> None:
    step = Streaming()
    rows = iter_unit([step], _src("/b/long.wav"))
    first = next(rows)
    assert first["kind"] == ITEM and step.log == ["made 0"]  # nothing made ahead of demand
    rest = list(rows)
    assert [r["kind"] for r in rest] == [ITEM, ITEM, UNIT] and unpack(rest[-1])["n_expected"] == 3


def test_a_step_failing_mid_source_keeps_what_it_yielded() -> None:
    rows = process_source([Streaming()], _src("/b/bad_long.wav"))
    assert [r["kind"] for r in rows] == [ITEM, ITEM, ERROR, UNIT]
    err, w = unpack(rows[2])
    assert (err["step"], err["error_type"], w) == ("stream", "RuntimeError", 1)
    assert drive([rows], [], Collect()).completed == [Source.make("/b/bad_long.wav", 1, "1").key]


def test_a_subclass_overriding_process_of_a_streaming_step_is_honoured() -> None:
    class Custom(Streaming):
        def process(self, item):
            return [{**item, "clip_id": "custom"}]

    assert [c["clip_id"] for c in Custom().outputs({"source_uri": "/b/x.wav"})] == ["custom"]
    assert len(list(Streaming().outputs({"source_uri": "/b/x.wav"}))) == 3
    rows = process_source([Custom()], _src("/b/x.wav"))
    assert [unpack(r)[0][0]["clip_id"] for r in rows if r["kind"] == ITEM] == ["custom"]


def test_a_version_1_manifest_reads_in_the_current_schema(tmp_path: Path) -> None:
    """Parts written before the quality signals (schema 1: no n_asr, transcripts without their
    checks) read back in ``CLIP_SCHEMA``; eligibility counts their transcripts as systems."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from accord.core.clip import CLIP_SCHEMA, TRANSCRIPT_TYPE

    v1_transcript = pa.struct([f for f in TRANSCRIPT_TYPE if f.name in (
        "system", "model", "text", "normalized", "language", "language_prob", "avg_logprob")])  # fmt: skip
    v2_only = {"n_asr", "hallucinated", "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808",
               "speaker_consistency", "speaker_split_sim", "speaker_change_s"}  # fmt: skip
    fields = [
        pa.field("transcripts", pa.list_(v1_transcript)) if f.name == "transcripts" else f
        for f in CLIP_SCHEMA
        if f.name not in v2_only
    ]
    v1 = pa.schema(fields, metadata={"accord.schema_version": "1"})
    tr = {"system": "faster-whisper", "model": "m", "text": "hi there", "normalized": "hi there",
          "language": "en", "language_prob": 0.9, "avg_logprob": -0.1}  # fmt: skip
    row = {k: v for k, v in _clip("/r/a.wav", 0, transcripts=[tr, {**tr, "system": "moonshine"}]).items()
           if k not in v2_only}  # fmt: skip
    (tmp_path / "o" / "manifest").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([row], schema=v1), tmp_path / "o" / "manifest" / "part-x.parquet")
    t = read_manifest(str(tmp_path / "o"))
    assert t.schema.equals(CLIP_SCHEMA, check_metadata=False)
    got = t.to_pylist()[0]
    assert got["n_asr"] is None and got["transcripts"][1]["system"] == "moonshine"
    assert got["transcripts"][0]["flags"] is None and got["eligible_pretrain"]


def test_stats_count_what_each_gate_removes() -> None:
    from accord.core.manifest import clip_table
    from accord.pipeline.manifest.stats import gate_counts, signal_summary

    good = {"snr_db": 40.0, "bandwidth_hz": 8000.0, "language_prob": 0.99, "duration_s": 4.0, "end_s": 4.0,
            "dnsmos_ovrl": 3.4, "speaker_consistency": 0.9, "speaker_split_sim": 0.9, "speaking_rate": 15.0,
            "leading_silence_s": 0.1, "trailing_silence_s": 0.1, "language_check": "agrees"}  # fmt: skip
    rows = [
        _clip("/r/a.wav", 0, **good),
        _clip("/r/a.wav", 1, **{**good, "dnsmos_ovrl": 2.0}),
        _clip("/r/a.wav", 2, **{**good, "dnsmos_ovrl": 2.0, "speaker_split_sim": 0.5}),
        _clip("/r/a.wav", 3, **{**good, "n_asr": 1, "agreement": math.nan}),
        _clip("/r/a.wav", 4, **{**good, "hallucinated": True}),
        _clip("/r/a.wav", 5, **{**good, "language_check": "differs"}),
        _clip("/r/a.wav", 6, **{**good, "language_check": "unverified"}),
    ]
    gates = gate_counts(clip_table(rows), stages=("pretrain", "anneal1"))
    assert gates["pretrain"] == {
        "reject_hallucinated": {"failed": 1, "only": 1},
        "reject_language_mismatch": {"failed": 1, "only": 1},
    }
    assert gates["anneal1"] == {
        "min_dnsmos_ovrl": {"failed": 2, "only": 1},
        "require_language_agreement": {"failed": 2, "only": 1},
        "min_asr_systems": {"failed": 1, "only": 1},
        "min_speaker_split_sim": {"failed": 1, "only": 0},
        "reject_hallucinated": {"failed": 1, "only": 1},
        "reject_language_mismatch": {"failed": 1, "only": 0},
    }
    from accord.pipeline.manifest.stats import agreement_histogram

    assert sum(agreement_histogram(clip_table(rows))["*"]) == 6  # the single-system clip has none
    signals = signal_summary(clip_table(rows))
    assert signals["n_asr"] == {"1": 1, "2": 6} and signals["hallucinated"] == {"clips": 1}
    assert signals["dnsmos_ovrl"]["measured"] == 7 and sum(signals["dnsmos_ovrl"]["counts"]) == 7
