"""Shard writing: deterministic plan, atomic publish, done markers, index tables, WebDataset reads."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from accord.tokenize.shards import (
    RANDOM_WEIGHTS_KEY,
    ShardConfig,
    ShardWriter,
    is_done,
    iter_samples,
    plan_shards,
    read_random_weights,
    read_sample,
    write_index,
    write_shard,
)


def _sample(i: int, seconds: float = 1.0, lang: str = "en") -> dict:
    rng = np.random.default_rng(i)
    T = round(seconds * 86.1328125)
    return {
        "codes": rng.integers(0, 1024, (9, T)).astype(np.int16),
        "spk": rng.normal(size=192).astype(np.float32),
        "spkcrop": rng.normal(size=192).astype(np.float32),
        "spkaug": rng.normal(size=(4, 192)).astype(np.float32),
        "json": {
            "clip_id": f"clip{i:04d}",
            "language": lang,
            "duration_s": seconds,
            "n_frames": T,
            "agreement": 0.9,
            "eligible": {"pretrain": True, "midtrain": i % 2 == 0, "anneal1": False, "anneal2": False},
            "features": {"speaking_rate": 12.0, "snr_db": 30.0},
            "source_uri": f"/src/{i}.wav",
            "transcripts": [{"system": "truth", "text": "héllo"}],
        },
    }


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
    ids = [s["json"]["clip_id"] for s in samples]
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
    back = {s["__key__"]: s for s in iter_samples(root)}
    assert sorted(back) == ids
    for s in samples:
        got = back[s["json"]["clip_id"]]
        assert np.array_equal(got["codes.npy"], s["codes"]) and got["codes.npy"].dtype == np.int16
        assert np.array_equal(got["spkaug.npy"], s["spkaug"])
        assert got["json"]["transcripts"][0]["text"] == "héllo"
    assert read_sample(root, "clip0004")["json"]["language"] == "de"
    with pytest.raises(KeyError):
        read_sample(root, "nope")


def test_webdataset_reads_our_tars(tmp_path) -> None:
    import webdataset as wds

    root = str(tmp_path)
    samples = [_sample(i) for i in range(3)]
    write_shard(root, 0, [s["json"]["clip_id"] for s in samples], samples)
    ds = wds.WebDataset(str(tmp_path / "shards" / "shard-000000.tar"), shardshuffle=False).decode()
    got = list(ds)
    assert [g["__key__"] for g in got] == ["clip0000", "clip0001", "clip0002"]
    assert got[0]["codes.npy"].shape == (9, 86) and isinstance(got[0]["json"], dict)


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
        bad["json"]["clip_id"] = "a.b"
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
    from accord.tokenize.shards import remove_stale

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
    assert [s["__key__"] for s in iter_samples(root)] == ["clip0000"]


def test_random_weights_in_the_index_and_its_reader(tmp_path) -> None:
    root = tmp_path / "shards"
    samples = [_sample(i) for i in range(3)]
    ids = [s["json"]["clip_id"] for s in samples]
    write_shard(str(root), 0, ids[:1], samples[:1])  # nothing recorded (e.g. hand-made shards)
    index, _ = write_index(str(root), 1)
    assert index[RANDOM_WEIGHTS_KEY].to_pylist() == [None]
    assert read_random_weights(str(root)) is None, "unknown is not 'no random weights'"
    write_shard(str(root), 1, ids[1:2], samples[1:2], random_weights=[])
    write_index(str(root), 2)
    assert read_random_weights(str(root)) == []
    write_shard(
        str(root), 2, ids[2:], samples[2:], random_weights=["ecapa:random", "dac:random", "dac:random"]
    )
    index, _ = write_index(str(root), 3)
    assert index[RANDOM_WEIGHTS_KEY].to_pylist() == [None, [], ["dac:random", "ecapa:random"]]
    (root / "tokenize.json").write_text(json.dumps({RANDOM_WEIGHTS_KEY: ["x:random"]}))
    assert read_random_weights(str(root)) == ["dac:random", "ecapa:random", "x:random"]  # any source counts
