"""Shard writing: deterministic plan, atomic publish, done markers, index tables, WebDataset reads."""

from __future__ import annotations

import json
import logging
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest

from accord.core.clip import sample_meta
from accord.core.shards import (
    RANDOM_WEIGHTS_KEY,
    SHARD_FORMAT_VERSION,
    ShardConfig,
    ShardError,
    ShardSample,
    ShardWriter,
    is_done,
    iter_samples,
    plan_shards,
    read_record,
    read_sample,
    read_samples,
    read_shard,
    read_tar,
    read_tokenize_json,
    tokenize_refs,
    write_index,
    write_shard,
    write_tokenize_json,
)
from accord.core.vocab import CODEC_FRAME_RATE


def _row(i: int, seconds: float, lang: str) -> dict:
    """A manifest row (the fields a shard sample carries)."""
    return {
        "clip_id": f"clip{i:04d}",
        "language": lang,
        "start_s": 2.0,
        "end_s": 2.0 + seconds,
        "agreement": 0.9,
        "eligible_pretrain": True,
        "eligible_midtrain": i % 2 == 0,
        "speaking_rate": 12.0,
        "snr_db": 30.0,
        "source_uri": f"/src/{i}.wav",
        "transcripts": [{"system": "truth", "text": "héllo"}],
        "pairs": [{"a": "x", "b": "y", "wer": 0.1, "cer": 0.05}],
    }


def _sample(i: int, seconds: float = 1.0, lang: str = "en") -> ShardSample:
    rng = np.random.default_rng(i)
    T = round(seconds * CODEC_FRAME_RATE)
    return ShardSample(
        codes=rng.integers(0, 1024, (9, T)).astype(np.int16),
        spk=rng.normal(size=192).astype(np.float32),
        spkcrop=rng.normal(size=192).astype(np.float32),
        spkaug=rng.normal(size=(4, 192)).astype(np.float32),
        meta=sample_meta(_row(i, seconds, lang), T, (0, T // 2), ("noise",)),
    )


def test_sample_meta_is_the_manifest_row_flat() -> None:
    meta = _sample(3, seconds=1.5).meta
    assert meta["duration_s"] == pytest.approx(1.5) and meta["n_frames"] == round(1.5 * CODEC_FRAME_RATE)
    assert meta["eligible_pretrain"] is True and meta["eligible_midtrain"] is False
    assert meta["eligible_anneal2"] is False, "absent eligibility is False, never missing"
    assert meta["snr_db"] == 30.0 and meta["speaker_crop"] == [0, meta["n_frames"] // 2]
    assert "pairs" not in meta and "eligible" not in meta and "features" not in meta
    assert meta["transcripts"][0]["text"] == "héllo" and "language_prob" in meta["transcripts"][0]
    json.dumps(meta, allow_nan=False)  # NaN-free: json_safe ran


def test_format_1_shards_read_in_the_current_shape(tmp_path) -> None:
    """Shards written before the flat clip shape (nested eligible/features, a ``seconds`` column)."""
    root = tmp_path / "old"
    s = _sample(0, seconds=2.0)
    flat = s.meta
    s.meta = {
        **{k: v for k, v in flat.items() if not k.startswith(("eligible_", "snr_db", "speaking_rate"))},
        "eligible": {"pretrain": True, "midtrain": True, "anneal1": False, "anneal2": False},
        "features": {"snr_db": 31.0, "speaking_rate": 11.0},
    }
    write_shard(str(root), 0, ["clip0000"], [s])
    write_index(str(root), 1)
    samples = pq.read_table(root / "samples.parquet")
    old_names = ["seconds" if c == "duration_s" else c for c in samples.column_names]
    pq.write_table(samples.rename_columns(old_names), root / "samples.parquet")
    got = read_sample(str(root), "clip0000").meta
    assert got["eligible_midtrain"] is True and got["snr_db"] == 31.0 and "features" not in got
    table = read_samples(str(root))
    assert table["duration_s"].to_pylist() == [pytest.approx(2.0)] and "seconds" not in table.column_names
    assert table["snr_db"].to_pylist() == [31.0]


def test_truncated_tar_is_an_error_and_a_bad_sample_only_skips_itself(tmp_path) -> None:
    import io

    write_shard(str(tmp_path), 0, ["clip0000"], [_sample(0)])
    buf = io.BytesIO()
    with (
        tarfile.open(tmp_path / "shards" / "shard-000000.tar") as good,
        tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar,
    ):
        for info in good.getmembers():
            tar.addfile(info, good.extractfile(info))
        for name, payload in (("clip0001.codes.npy", b"not npy"), ("clip0001.json", b"{}")):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    data = buf.getvalue()
    samples, n_bad = read_tar(data)
    assert [x.clip_id for x in samples] == ["clip0000"] and n_bad == 1
    with pytest.raises(ShardError, match="truncated"):
        read_tar(data[: len(data) // 2 // 512 * 512])
    with pytest.raises(ShardError):
        read_shard(str(tmp_path / "missing.tar"))


def test_tokenize_json_is_stamped_and_read_back(tmp_path) -> None:
    root = str(tmp_path)
    assert read_tokenize_json(root) is None and tokenize_refs(root) == {}
    write_tokenize_json(root, {"codec": {"ref": "dac:random"}, "speaker": {"ref": "ecapa:auralis"},
                               RANDOM_WEIGHTS_KEY: ["dac:random"]})  # fmt: skip
    assert read_tokenize_json(root)["shard_format"] == SHARD_FORMAT_VERSION
    assert tokenize_refs(root) == {"codec": "dac:random", "speaker": "ecapa:auralis",
                                   RANDOM_WEIGHTS_KEY: ["dac:random"]}  # fmt: skip
    (tmp_path / "tokenize.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_tokenize_json(root)


def test_plan_is_deterministic_and_bounded() -> None:
    clips = [{"clip_id": f"c{i:03d}", "duration_s": 5.0} for i in range(50)]
    cfg = ShardConfig(max_bytes=100_000, max_samples=7)
    plan = plan_shards(list(reversed(clips)), cfg)
    assert plan == plan_shards(clips, cfg)
    assert [c for shard in plan for c in shard] == sorted(c["clip_id"] for c in clips)
    assert all(len(s) <= 7 for s in plan)
    big = plan_shards(clips, ShardConfig(max_bytes=30_000))
    assert len(big) > 1 and all(len(s) >= 1 for s in big)


def test_write_read_index_and_skip(tmp_path) -> None:
    root = str(tmp_path / "shards")
    samples = [_sample(i, seconds=1.0 + i % 3, lang="en" if i < 4 else "de") for i in range(6)]
    ids = [s.key for s in samples]
    plan = [ids[:3], ids[3:]]
    err = {"input_uri": "/x", "clip_id": "clip9999", "step": "tokenize:read", "error_type": "missing_source",
           "reason": "gone", "run_id": "r"}  # fmt: skip
    write_shard(root, 0, plan[0], samples[:3])
    assert is_done(root, 0, plan[0]) and not is_done(root, 1, plan[1])
    assert not is_done(root, 0, plan[0][:2]), "a changed clip set is not done"
    write_shard(root, 1, [*plan[1], "clip9999"], samples[3:], errors={"clip9999": err})
    index, table = write_index(root, 2)
    assert index["n_samples"].to_pylist() == [3, 3] and index["n_errors"].to_pylist() == [0, 1]
    assert sorted(table["clip_id"].to_pylist()) == ids
    assert index["n_midtrain"].to_pylist() == [2, 1]
    langs: dict[str, int] = {}
    for row in index["languages"].to_pylist():
        for d in row:
            langs[d["language"]] = langs.get(d["language"], 0) + d["n_samples"]
    assert langs == {"en": 4, "de": 2}
    assert pq.read_table(tmp_path / "shards" / "errors" / "shard-000001.parquet")[
        "error_type"
    ].to_pylist() == ["missing_source"]
    back = {s.key: s for s in iter_samples(root)}
    assert sorted(back) == ids
    for s in samples:
        got = back[s.key]
        assert got.clip_id == s.key
        assert np.array_equal(got.codes, s.codes) and got.codes.dtype == np.int16
        assert np.array_equal(got.spk, s.spk) and np.array_equal(got.spkcrop, s.spkcrop)
        assert np.array_equal(got.spkaug, s.spkaug)
        assert got.meta["transcripts"][0]["text"] == "héllo"
    assert read_sample(root, "clip0004").meta["language"] == "de"
    with pytest.raises(KeyError):
        read_sample(root, "nope")


def test_webdataset_reads_our_tars(tmp_path) -> None:
    import webdataset as wds

    root = str(tmp_path)
    samples = [_sample(i) for i in range(3)]
    write_shard(root, 0, [s.key for s in samples], samples)
    ds = wds.WebDataset(str(tmp_path / "shards" / "shard-000000.tar"), shardshuffle=False).decode()
    got = list(ds)
    assert [g["__key__"] for g in got] == ["clip0000", "clip0001", "clip0002"]
    assert got[0]["codes.npy"].shape == (9, 86) and isinstance(got[0]["json"], dict)
    with tarfile.open(tmp_path / "shards" / "shard-000000.tar") as tar:  # the names on disk
        names = tar.getnames()
    assert names[:5] == [
        f"clip0000.{m}" for m in ("codes.npy", "spk.npy", "spkcrop.npy", "spkaug.npy", "json")
    ]


def test_abort_publishes_nothing_and_writer_rejects_strays(tmp_path) -> None:
    root = str(tmp_path)
    w = ShardWriter(root, 0, ["clip0000", "clip0001"])
    w.add(_sample(0))
    with pytest.raises(ValueError, match="not pending"):
        w.add(_sample(0))
    with pytest.raises(RuntimeError, match="pending"):
        w.close()
    w.abort()
    assert list((tmp_path / "shards").iterdir()) == [], "no tar, no temp file, no marker"
    with pytest.raises(ValueError, match="WebDataset key"):
        bad = _sample(1)
        bad.meta["clip_id"] = "a.b"
        write_shard(root, 0, ["a.b"], [bad])
    assert not any(p.suffix in (".tar", ".done") for p in (tmp_path / "shards").iterdir())


def test_done_marker_written_last(tmp_path) -> None:
    root = str(tmp_path)
    s = _sample(0)
    info = write_shard(root, 0, ["clip0000"], [s])
    marker = json.loads((tmp_path / "shards" / "shard-000000.done").read_text())
    assert marker["plan_digest"] == info["plan_digest"] and marker["n_samples"] == 1
    (tmp_path / "shards" / "shard-000000.tar").unlink()  # a lost tar makes the shard not-done
    assert not is_done(root, 0, ["clip0000"])


def test_remove_stale_drops_shards_beyond_the_plan(tmp_path) -> None:
    from accord.core.shards import remove_stale

    root = str(tmp_path)
    for i in range(3):
        write_shard(root, i, [f"clip{i:04d}"], [_sample(i)])
    write_index(root, 3)
    assert remove_stale(root, 1) == ["shard-000001", "shard-000002"]
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == [
        "shard-000000.done",
        "shard-000000.tar",
    ]
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == ["shard-000000.parquet"]
    write_index(root, 1)
    assert [s.key for s in iter_samples(root)] == ["clip0000"]


def test_random_weights_in_the_index_and_tokenize_json(tmp_path) -> None:
    root = tmp_path / "shards"
    samples = [_sample(i) for i in range(3)]
    ids = [s.key for s in samples]
    write_shard(str(root), 0, ids[:1], samples[:1])  # nothing recorded (e.g. hand-made shards)
    index, _ = write_index(str(root), 1)
    assert index[RANDOM_WEIGHTS_KEY].to_pylist() == [None]
    write_shard(str(root), 1, ids[1:2], samples[1:2], random_weights=[])
    assert write_index(str(root), 2)[0][RANDOM_WEIGHTS_KEY].to_pylist() == [None, []]
    write_shard(
        str(root), 2, ids[2:], samples[2:], random_weights=["ecapa:random", "dac:random", "dac:random"]
    )
    index, _ = write_index(str(root), 3)
    assert index[RANDOM_WEIGHTS_KEY].to_pylist() == [None, [], ["dac:random", "ecapa:random"]]
    (root / "tokenize.json").write_text(json.dumps({RANDOM_WEIGHTS_KEY: ["x:random"]}))
    assert tokenize_refs(str(root))[RANDOM_WEIGHTS_KEY] == ["x:random"]


def _flip(path, offset: int) -> None:
    """Change one byte of the file at ``path``."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def _member(path, name: str) -> tarfile.TarInfo:
    with tarfile.open(path) as tar:
        return tar.getmember(name)


def test_a_damaged_header_mid_tar_is_detected_and_read_past(tmp_path, caplog) -> None:
    """tarfile reads a damaged member header as the end of the archive: never silently short."""
    root = str(tmp_path)
    samples = [_sample(i) for i in range(3)]
    write_shard(root, 0, [s.key for s in samples], samples)
    tar = tmp_path / "shards" / "shard-000000.tar"
    _flip(tar, _member(tar, "clip0001.spk.npy").offset + 3)  # in the member's name
    with pytest.raises(ShardError, match="damaged tar header"):
        read_shard(str(tar))  # nothing recorded to check: the whole shard, never 1 of 3
    with caplog.at_level(logging.WARNING):
        got, n_bad = read_shard(str(tar), read_record(root, "shard-000000"))
    assert [s.key for s in got] == ["clip0000", "clip0002"] and n_bad == 1
    assert "damaged tar header" in caplog.text and "clip0001" in caplog.text
    clean = {s.key: s for s in samples}
    for s in iter_samples(root):  # the re-read: the clean shard's samples minus the bad one
        assert s.key != "clip0001" and np.array_equal(s.codes, clean[s.key].codes)
        assert np.array_equal(s.spkaug, clean[s.key].spkaug) and s.meta == clean[s.key].meta


def test_a_changed_byte_in_the_codes_skips_that_sample(tmp_path) -> None:
    root = str(tmp_path)
    samples = [_sample(i) for i in range(3)]
    write_shard(root, 0, [s.key for s in samples], samples)
    index, _ = write_index(root, 1)
    record = read_record(root, "shard-000000")
    assert record is not None and record.n_samples == 3 and record.mismatch(index.to_pylist()[0]) is None
    tar = tmp_path / "shards" / "shard-000000.tar"
    _flip(tar, _member(tar, "clip0002.codes.npy").offset_data + 200)  # inside the int16 array
    got, n_bad = read_shard(str(tar), record)
    assert [s.key for s in got] == ["clip0000", "clip0001"] and n_bad == 1
    assert all(np.array_equal(s.codes, samples[i].codes) for i, s in enumerate(got))


def test_shards_without_checksums_still_read(tmp_path, caplog) -> None:
    """Shards of an older accord: their markers and index record no checksum; nothing is checked."""
    root = str(tmp_path)
    samples = [_sample(i) for i in range(2)]
    write_shard(root, 0, [s.key for s in samples], samples)
    marker = tmp_path / "shards" / "shard-000000.done"
    old = {
        k: v for k, v in json.loads(marker.read_text()).items() if k not in ("checksum", "sample_checksums")
    }
    marker.write_text(json.dumps(old))
    index, _ = write_index(root, 1)
    assert index["checksum"].to_pylist() == [None]
    record = read_record(root, "shard-000000")
    assert record is not None and record.sample_checksums is None
    with caplog.at_level(logging.DEBUG, logger="accord.core.shards"):
        got, n_bad = read_shard(str(tmp_path / "shards" / "shard-000000.tar"), record)
    assert [s.key for s in got] == ["clip0000", "clip0001"] and n_bad == 0
    assert "unverified" in caplog.text
    index_row = {k: v for k, v in index.to_pylist()[0].items() if k != "checksum"}  # an older index
    assert record.mismatch(index_row) is None
