"""Vocabulary layout (ZONOS2's release order), the release's bucket rules, config round trip."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.core.vocab import (
    BACKGROUND_MARKERS,
    BOS_ID,
    BYTE_OFFSET,
    EOS_ID,
    N_SILENCE_FRAMES,
    SILENCE_FRAMES,
    Bucket,
    Vocab,
    VocabConfig,
    accord_v1_config,
    quality_bucket,
    rate_bucket,
)


def test_layout_and_text_round_trip() -> None:
    v = Vocab()
    ids = v.encode_text("héllo, 世界")
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    assert all(BYTE_OFFSET <= i < BYTE_OFFSET + 256 for i in ids[1:-1])
    assert v.decode_text(ids) == "héllo, 世界"
    assert v.rate_offset == BYTE_OFFSET + 256
    assert v.text_pad_id == v.size


def test_default_is_the_release_layout() -> None:
    """zonos2.h's defaults: 8 rate buckets, quality 12/12/12/8/8/8, 2 background, 1 accurate."""
    v = Vocab()
    assert v.size == 519
    assert v.n_rate == 8
    assert list(v.quality_offsets) == [
        "lufs", "estimated_snr", "max_pause", "estimated_bandlimit_hz",
        "leading_silence_s", "trailing_silence_s",
    ]  # fmt: skip
    assert [len(b) for b in v.config.quality_buckets.values()] == [12, 12, 12, 8, 8, 8]
    assert v.background_offset == 516 and v.accurate_id == 518
    assert len(SILENCE_FRAMES) == N_SILENCE_FRAMES == 17 and all(len(f) == 9 for f in SILENCE_FRAMES)


def test_control_ids_are_disjoint_and_named() -> None:
    v = Vocab()
    names = [v.describe(i) for i in range(v.rate_offset, v.size)]
    assert len(set(names)) == len(names) == v.size - v.rate_offset
    assert names[-1] == "<accurate>"
    assert v.describe(v.text_pad_id) == "<text_pad>"
    with pytest.raises(ValueError):
        v.describe(v.size + 1)


def test_release_bucket_rules() -> None:
    """ZONOS2's api_server rules: rate ranges are lo-inclusive; quality: exact labels first,
    ``lo <= v < hi`` except the last range (closed), open ranges take ``v >= lo``, out of range
    values clamp to the first / last range."""
    rate = ("0-8", "8-11", "11-14", "40+")
    assert [rate_bucket(rate, x) for x in (0.5, 8.0, 10.99, 11.0, 39.0, 1e6)] == [0, 1, 1, 2, 3, 3]
    with pytest.raises(ValueError):
        rate_bucket(rate, 0.0)
    lufs = ("-1000--50", "-50--45.5", "-5+")
    assert Bucket.parse("-1000--50") == Bucket(False, -1000.0, -50.0)
    assert [quality_bucket(lufs, x) for x in (-2000.0, -50.0, -46.0, -45.5, -5.0, 3.0)] == [0, 1, 1, 2, 2, 2]
    closed = ("0", "0-0.5", "0.5-1")
    assert [quality_bucket(closed, x) for x in (0.0, 1e-3, 0.5, 1.0, 7.0)] == [0, 1, 2, 2, 2]
    with pytest.raises(ValueError):
        Bucket.parse("5-1")


def test_quality_values_read_the_manifest_columns() -> None:
    v = Vocab()
    feats = {
        "loudness_lufs": -23.0,
        "snr_db": np.float32(35.0),
        "longest_pause_s": math.nan,
        "bandwidth_hz": None,
    }
    assert v.quality_values(feats) == {"lufs": -23.0, "estimated_snr": 35.0}
    assert v.describe(v.quality_token("lufs", -23.0)) == "<lufs:7>"  # "-23--18.5"
    assert v.describe(v.quality_token("estimated_snr", 35.0)) == "<estimated_snr:6>"  # "30-36"
    with pytest.raises(KeyError):
        v.quality_token("snr_db", 1.0)


def test_background_markers() -> None:
    v = Vocab()
    assert v.background_marker({"snr_db": 5.0}) == "noisy"
    assert v.background_marker({"snr_db": 40.0}) == "clean"
    assert v.background_marker({"background": "music", "snr_db": 40.0}) == "noisy"
    assert v.background_token("noise") == v.background_token("music") == v.background_token("noisy")
    assert v.background_token("clean") == v.background_token("noisy") - 1
    with pytest.raises(KeyError):
        v.background_token("rain")
    assert BACKGROUND_MARKERS == ("clean", "noisy")  # ZONOS2's order


def test_zonos2_params_locate_every_control_token() -> None:
    """ZONOS2's server finds control tokens by counting back from text_vocab; ours must agree.

    The arithmetic below is ZONOS2's tail layout (rate buckets, quality buckets per feature,
    clean/noisy background markers, accurate-mode marker), written out independently.
    """
    for v in (Vocab(), Vocab(accord_v1_config())):
        p = v.zonos2_params()
        counts = [len(p["quality_buckets"][f]) for f in p["quality_features"]]
        assert p["quality_num_buckets"] == sum(counts)
        base = v.size - p["speaking_rate_num_buckets"] - sum(counts) - 2 - 1
        assert base == 192 + 256  # legacy symbols + bytes: nothing of ours is below the tail
        for b in range(p["speaking_rate_num_buckets"]):
            assert v.describe(base + b) == f"<rate:{b}>"
        off = base + p["speaking_rate_num_buckets"]
        for f, n in zip(p["quality_features"], counts, strict=True):
            for b in range(n):
                assert v.describe(off + b) == f"<{f}:{b}>"
            off += n
        assert v.background_token("clean") == off and v.background_token("noisy") == off + 1
        assert v.accurate_id == off + 2 == v.size - 1
        # labels parse as ZONOS2's rate ranges: start at 0, contiguous, open-ended last
        rate = p["speaking_rate_buckets"]
        assert rate[0].startswith("0-") and rate[-1].endswith("+") and len(rate) == v.n_rate
        for lo_hi, nxt in itertools.pairwise(rate):
            assert lo_hi.split("-")[1] == nxt.rstrip("+").split("-")[0]


def test_old_layout_stays_constructible_and_readable() -> None:
    """accord's pre-release layout (474 ids), also from the edges form old checkpoints recorded."""
    old = accord_v1_config()
    assert Vocab(old).size == 474
    assert list(old.quality_buckets) == ["snr_db", "bandwidth_hz", "agreement"]
    recorded = {
        "speaking_rate_edges": [8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0],
        "quality_edges": {"snr_db": [10, 20, 30, 40], "bandwidth_hz": [4000, 8000, 12000, 16000],
                          "agreement": [0.5, 0.7, 0.85, 0.95]},
        "quality_floors": {"snr_db": -50.0, "bandwidth_hz": 0.0, "agreement": 0.0},
        "background_snr_db": 15.0,
    }  # fmt: skip
    assert VocabConfig.from_dict(recorded) == old
    v = Vocab(old)
    # the old rule (bisect_right on the edges) and the release's label rule agree
    assert (
        v.describe(v.rate_token(10.0)) == "<rate:2>"
        and v.describe(v.quality_token("agreement", 0.9)) == "<agreement:3>"
    )


def test_layouts_round_trip_and_survive_a_key_sorting_json_writer() -> None:
    cfg = VocabConfig(
        speaking_rate_buckets=("0-5", "5-15", "15+"),
        quality_buckets={"snr": ("-100-20", "20+"), "agreement": ("0", "0-1")},
        quality_columns={"snr": "snr_db"},
        default_quality_buckets={"agreement": 1},
        background_snr_db=10.0,
    )
    v = Vocab(cfg)
    assert v.n_rate == 3
    assert v.size == Vocab().rate_offset + 3 + 4 + len(BACKGROUND_MARKERS) + 1
    assert v.quality_values({"snr_db": 30.0, "agreement": 0.0}) == {"snr": 30.0, "agreement": 0.0}
    back = VocabConfig.from_dict(json.loads(json.dumps(cfg.to_dict(), sort_keys=True)))
    assert back == cfg and hash(back) == hash(cfg)
    assert list(back.quality_buckets) == ["snr", "agreement"]  # token order, not the sorted keys
    assert Vocab(back).quality_offsets == v.quality_offsets
    # ZONOS2's params.json keys alone describe the same ids
    assert Vocab(VocabConfig.from_dict(v.zonos2_params())).quality_offsets == v.quality_offsets
    bad = {**cfg.to_dict(), "quality_features": ["snr"]}
    with pytest.raises(ValueError, match="quality_features"):
        VocabConfig.from_dict(bad)
    with pytest.raises(ValueError):
        VocabConfig(default_quality_buckets={"trailing_silence_s": 8})


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(feature=st.sampled_from(list(Vocab().quality_offsets)), value=finite)
def test_every_value_lands_in_one_bucket_of_its_feature(feature: str, value: float) -> None:
    v = Vocab()
    name = v.describe(v.quality_token(feature, value))
    assert name.startswith(f"<{feature}:")
    labels = v.config.quality_buckets[feature]
    b = Bucket.parse(labels[int(name[:-1].split(":")[1])])
    inside = b.lo <= value and (b.hi is None or value <= b.hi)
    first, last = Bucket.parse(labels[0]), Bucket.parse(labels[-1])
    assert inside or value < first.lo or (last.hi is not None and value > last.hi)
