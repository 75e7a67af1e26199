"""End to end: a clip manifest over the generated bucket → Ray tokenize job → shards.

The manifest points at real audio files of the sample bucket (three voices, three formats),
plus an ineligible clip, a duplicate row, a missing source and a corrupt source.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from click.testing import CliRunner

from accord.core.shards import RANDOM_WEIGHTS_KEY, ShardConfig, iter_samples, tokenize_refs
from accord.tokenize.codec import CodecConfig
from accord.tokenize.job import TokenizeConfig, run_tokenize
from accord.tokenize.sample_manifest import clip_row, rows_from_bucket, write_manifest
from accord.tokenize.speaker import SpeakerConfig, cosine

pytestmark = pytest.mark.integration

FILES = ["en_flite_slt.flac", "en_espeak_us.wav", "en_flite_awb.m4a"]
CLIP_S = 1.2


def _config(executor: str) -> TokenizeConfig:
    return TokenizeConfig(
        codec=CodecConfig(ref="dac:random"),  # no trained DAC ships offline: the explicit opt-in
        speaker=SpeakerConfig(ref="ecapa:auralis"),
        shards=ShardConfig(max_samples=3),
        executor=executor,
        batch_size=4,
        dac_num_cpus=0.75,
        speaker_num_cpus=0.5,
    )


@pytest.fixture(scope="session")
def job(sample_bucket, tmp_path_factory):
    root = tmp_path_factory.mktemp("tokenize")
    rows = rows_from_bucket(sample_bucket, files=FILES, per_file=2, max_seconds=CLIP_S)
    good = {r["clip_id"]: r for r in rows}
    src = str(sample_bucket.path / FILES[0])
    low = clip_row(src, 10.0, 11.5, "low agreement", "en")
    low["agreement"] = 0.1
    low.update({f"eligible_{s}": False for s in ("pretrain", "midtrain", "anneal1", "anneal2")})
    missing = clip_row(str(root / "gone.wav"), 0.0, 1.0, "missing", "en")
    corrupt_path = root / "corrupt.wav"
    corrupt_path.write_bytes(np.random.default_rng(0).bytes(50_000))
    corrupt = clip_row(str(corrupt_path), 0.0, 1.0, "corrupt", "en")
    manifest = write_manifest([*rows, rows[0], low, missing, corrupt], root / "ingest")
    shards = root / "shards"
    result = run_tokenize(str(manifest), str(shards), "pretrain", _config("ray"))
    return {
        "result": result,
        "shards": shards,
        "manifest": manifest,
        "good": good,
        "bad": {missing["clip_id"]: "missing", corrupt["clip_id"]: "corrupt"},
        "ineligible": low["clip_id"],
        "samples": {s.key: s for s in iter_samples(str(shards))},
    }


def test_every_eligible_clip_exactly_once(job) -> None:
    keys = [s.key for s in iter_samples(str(job["shards"]))]
    assert sorted(keys) == sorted(job["good"]), "each good clip once; no ineligible, failed or duplicate rows"
    table = pq.read_table(job["shards"] / "samples.parquet")
    assert sorted(table["clip_id"].to_pylist()) == sorted(job["good"])
    index = pq.read_table(job["shards"] / "index.parquet")
    assert sum(index["n_samples"].to_pylist()) == len(job["good"])
    assert sum(index["n_errors"].to_pylist()) == len(job["bad"])
    assert index.num_rows == job["result"].n_shards == 3  # 8 eligible clips, 3 per shard
    assert abs(sum(index["seconds"].to_pylist()) - CLIP_S * len(job["good"])) < 1e-6


def test_random_codec_weights_are_recorded(job) -> None:
    """The Ray actors loaded what the driver recorded: dac:random, in tokenize.json and every index row."""
    meta = json.loads((job["shards"] / "tokenize.json").read_text())
    assert meta[RANDOM_WEIGHTS_KEY] == ["dac:random"] and meta["codec"]["ref"] == "dac:random"
    index = pq.read_table(job["shards"] / "index.parquet")
    assert index[RANDOM_WEIGHTS_KEY].to_pylist() == [["dac:random"]] * index.num_rows
    assert tokenize_refs(str(job["shards"]))[RANDOM_WEIGHTS_KEY] == ["dac:random"]
    assert meta["text_normalization"]["normalized_languages"] == ["en"]


def test_codes_embeddings_and_metadata(job) -> None:
    for cid, s in job["samples"].items():
        row, meta, codes = job["good"][cid], s.meta, s.codes
        seconds = row["end_s"] - row["start_s"]
        assert codes.dtype == np.int16 and codes.shape[0] == 9
        assert abs(codes.shape[1] - round(seconds * 86.13)) <= 1
        assert codes.min() >= 0 and codes.max() < 1024
        assert s.spk.shape == s.spkcrop.shape == (192,)
        assert s.spkaug.shape == (4, 192)
        for emb in (s.spk, s.spkcrop, s.spkaug):
            assert emb.dtype == np.float32 and np.isfinite(emb).all()
        f0, f1 = meta["speaker_crop"]
        assert 0 <= f0 < f1 <= codes.shape[1] == meta["n_frames"]
        assert meta["augmentations"] == ["noise", "music", "codec", "reverb"]
        assert meta["source_uri"] == row["source_uri"] and meta["start_s"] == row["start_s"]
        assert meta["transcripts"][0]["text"] == row["transcripts"][0]["text"]
        # the spoken form beside the written one, made in the Ray source task (tokenize/textnorm.py)
        assert meta["transcripts"][0]["text_normalized"] and meta["normalization_outcome"] == "normalized"
        assert meta["eligible_pretrain"] is True and meta["language"] == "en"
        assert meta["snr_db"] == pytest.approx(40.0)


def test_same_voice_clips_are_closer(job) -> None:
    ids = sorted(job["samples"])
    voices = np.array([job["good"][i]["voice"] for i in ids])
    emb = np.stack([job["samples"][i].spk for i in ids])
    sim = cosine(emb, emb)
    same = (voices[:, None] == voices[None, :]) & ~np.eye(len(ids), dtype=bool)
    diff = voices[:, None] != voices[None, :]
    assert sim[same].mean() > sim[diff].mean()
    for i in range(len(ids)):  # each clip's same-voice partner beats its mean different-voice similarity
        assert sim[i][same[i]].max() > sim[i][diff[i]].mean()


def test_bad_sources_become_error_rows(job) -> None:
    errors = pq.read_table(job["shards"] / "errors").to_pylist()
    by_clip = {e["clip_id"]: e for e in errors}
    assert set(by_clip) == set(job["bad"])
    for cid, kind in job["bad"].items():
        e = by_clip[cid]
        assert e["step"] == "tokenize:read" and e["run_id"] == job["result"].run_id and e["reason"]
        if kind == "missing":
            assert e["error_type"] == "missing_source"
        else:  # the reader's kind (not_audio / decode_error), or the exception class it raised
            assert e["error_type"] and e["error_type"] != "missing_source"


def test_rerun_skips_done_shards_and_redoes_a_lost_one(job, dac_codec, auralis_encoder, tmp_path) -> None:
    shards = tmp_path / "shards"
    shutil.copytree(job["shards"], shards)
    tars = sorted((shards / "shards").glob("*.tar"))
    mtimes = [os.stat(t).st_mtime_ns for t in tars]
    again = run_tokenize(str(job["manifest"]), str(shards), "pretrain", _config("local"))
    assert (again.n_written, again.n_skipped, again.n_samples) == (0, 3, 0)
    assert [os.stat(t).st_mtime_ns for t in tars] == mtimes
    (shards / "shards" / "shard-000001.done").unlink()  # as if the job died while writing it
    third = run_tokenize(
        str(job["manifest"]),
        str(shards),
        "pretrain",
        _config("local"),
        codec=dac_codec,
        encoder=auralis_encoder,
    )
    assert (third.n_written, third.n_skipped) == (1, 2)
    name = "shards/shard-000001.tar"  # the local executor batches as Ray did: the same bytes
    assert (shards / name).read_bytes() == (job["shards"] / name).read_bytes()
    assert sorted(s.key for s in iter_samples(str(shards))) == sorted(job["good"])
    assert len(list(shards.rglob("*.tmp"))) == 0


def test_cli_decode_and_fit_lda(job, tmp_path) -> None:
    from accord.cli.main import cli

    cid = sorted(job["samples"])[0]
    out = tmp_path / "clip.wav"
    r = CliRunner().invoke(cli, ["tokenize", "decode", str(job["shards"]), "--id", cid, "--out", str(out)])
    assert r.exit_code == 0, r.output
    x, sr = sf.read(out)
    assert sr == 44100 and len(x) == job["samples"][cid].codes.shape[1] * 512
    r = CliRunner().invoke(cli, ["tokenize", "fit-lda", str(job["shards"])])
    assert r.exit_code == 0, r.output
    z = np.load(Path(job["shards"]) / "lda.npz")
    assert z["weight"].shape == (2, 192) and z["bias"].shape == (2,)  # 3 sources → 2 dims
    r = CliRunner().invoke(cli, ["tokenize", "decode", str(job["shards"]), "--id", "nope", "--out", str(out)])
    assert r.exit_code != 0 and "nope" in str(r.exception)


def test_one_bad_clip_does_not_sink_its_batch(auralis_encoder, voice_clips) -> None:
    from accord.jobs.rows import ERROR, ITEM, pack, process_rows, unpack
    from accord.tokenize.steps import SPEAKER_WAV, SpeakerStep

    step = SpeakerStep(_config("local"), encoder=auralis_encoder)
    good = voice_clips[0][1][:16000]
    poisoned = np.where(np.arange(16000) == 500, np.nan, good)
    codes = np.zeros((9, 86), np.int16)
    items = [
        clip_row("/a.wav", 0.0, 1.0, "a", "en") | {SPEAKER_WAV: good, "codes": codes},
        # a NaN sample poisons only this clip's embedding (per-item convs, eval-mode batch norm)
        clip_row("/b.wav", 0.0, 1.0, "b", "en") | {SPEAKER_WAV: poisoned, "codes": codes},
    ]
    out = process_rows(step, [pack("shard-000000", ITEM, [(it, 1) for it in items])], name=step.name)
    assert [r["kind"] for r in out] == [ERROR, ITEM]
    err, w = unpack(out[0])
    [(sample_item, _)] = unpack(out[1])
    assert np.isfinite(sample_item["sample"].spk).all() and sample_item["clip_id"] == items[0]["clip_id"]
    assert err["step"] == "tokenize:speaker" and err["error_type"] == "nan_embedding" and w == 1
    assert err["clip_id"] == items[1]["clip_id"] and err["input_uri"] == "/b.wav"


def test_the_release_voice_embedding_through_the_job(sample_bucket, tmp_path) -> None:
    """``zonos2-spk:*`` through the whole job, locally: each clip reaches the encoder at its own
    24 kHz (not ECAPA's 16 kHz), with the crop and augmented views, as 2048-d embeddings."""
    rows = rows_from_bucket(sample_bucket, files=FILES[:1], per_file=1, max_seconds=CLIP_S)
    manifest = write_manifest(rows, tmp_path / "ingest")
    cfg = _config("local")
    cfg.speaker = SpeakerConfig(ref="zonos2-spk:random")
    res = run_tokenize(str(manifest), str(tmp_path / "shards"), "pretrain", cfg)
    assert (res.n_samples, res.n_errors) == (1, 0)
    (sample,) = iter_samples(str(tmp_path / "shards"))
    assert sample.spk.shape == (2048,) and sample.spkaug.shape == (len(cfg.augment.names), 2048)
    assert tokenize_refs(str(tmp_path / "shards"))[RANDOM_WEIGHTS_KEY] == ["dac:random", "zonos2-spk:random"]


@pytest.mark.parametrize(("ref", "rate"), [("ecapa:auralis", 16000), ("zonos2-spk:random", 24000)])
def test_the_dac_step_resamples_for_the_named_speaker_encoder(dac_codec, ref, rate) -> None:
    from accord.tokenize.steps import SPEAKER_WAV, CodecStep

    cfg = _config("local")
    cfg.speaker = SpeakerConfig(ref=ref)
    (item,) = CodecStep(cfg, dac_codec).process({"clip_id": "c", "wav44": np.zeros(44100, np.float32)})
    assert len(item[SPEAKER_WAV]) == rate
