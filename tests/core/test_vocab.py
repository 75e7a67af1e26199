"""Vocabulary layout (ZONOS2 order), control tokens from features, config round trip."""

from __future__ import annotations

import itertools
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
    Vocab,
    VocabConfig,
)


def test_layout_and_text_round_trip() -> None:
    v = Vocab()
    ids = v.encode_text("héllo, 世界")
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    assert all(BYTE_OFFSET <= i < BYTE_OFFSET + 256 for i in ids[1:-1])
    assert v.decode_text(ids) == "héllo, 世界"
    assert v.rate_offset == BYTE_OFFSET + 256
    assert v.text_pad_id == v.size


def test_control_ids_are_disjoint_and_named() -> None:
    v = Vocab()
    names = [v.describe(i) for i in range(v.rate_offset, v.size)]
    assert len(set(names)) == len(names) == v.size - v.rate_offset
    assert names[-1] == "<quality_mode>"
    assert v.describe(v.text_pad_id) == "<text_pad>"
    with pytest.raises(ValueError):
        v.describe(v.size + 1)


def test_control_tokens_follow_bucket_edges() -> None:
    v = Vocab()
    feats = {"speaking_rate": 13.0, "snr_db": 35.0, "bandwidth_hz": 20000.0, "agreement": 0.9}
    ids = v.control_tokens(feats, quality_mode=True)
    assert [v.describe(i) for i in ids] == [
        "<rate:3>",
        "<snr_db:3>",
        "<bandwidth_hz:4>",
        "<agreement:3>",
        "<background:clean>",
        "<quality_mode>",
    ]
    # edges are inclusive on the left bucket boundary (bisect_right): 10.0 lands in bucket 2
    assert v.describe(v.rate_token(10.0)) == "<rate:2>"


def test_missing_features_emit_no_token_and_low_snr_is_noise() -> None:
    v = Vocab()
    ids = v.control_tokens({"speaking_rate": math.nan, "snr_db": np.float32(5.0), "agreement": None})
    assert [v.describe(i) for i in ids] == ["<snr_db:0>", "<background:noisy>"]
    assert v.background_marker({"background": "music", "snr_db": 40.0}) == "noisy"
    assert v.background_token("noise") == v.background_token("music") == v.background_token("noisy")
    assert v.background_token("clean") == v.background_token("noisy") - 1
    with pytest.raises(KeyError):
        v.background_token("rain")
    assert BACKGROUND_MARKERS == ("clean", "noisy")  # ZONOS2's order


def test_zonos2_params_locate_every_control_token() -> None:
    """ZONOS2's server finds control tokens by counting back from text_vocab; ours must agree.

    The arithmetic below is ZONOS2's documented tail layout (rate buckets, quality buckets per
    feature, clean/noisy background markers, accurate-mode marker), written out independently.
    """
    v = Vocab()
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
    assert v.quality_mode_id == off + 2 == v.size - 1
    # Bucket labels parse as ZONOS2's ranges: start at 0 (rate), contiguous, open-ended last.
    rate = p["speaking_rate_buckets"]
    assert rate[0].startswith("0-") and rate[-1].endswith("+") and len(rate) == v.n_rate
    for lo_hi, nxt in itertools.pairwise(rate):
        assert lo_hi.split("-")[1] == nxt.rstrip("+").split("-")[0]
    assert v.rate_token(9.0) == base + rate.index("8-10")


def test_edges_are_data() -> None:
    cfg = VocabConfig(
        speaking_rate_edges=(5.0, 15.0), quality_edges={"snr_db": (20.0,)}, background_snr_db=10.0
    )
    v = Vocab(cfg)
    assert v.n_rate == 3
    assert v.size == Vocab().rate_offset + 3 + 2 + len(BACKGROUND_MARKERS) + 1
    assert VocabConfig.from_dict(cfg.to_dict()) == cfg
    assert hash(VocabConfig.from_dict(cfg.to_dict())) == hash(cfg)
    assert v.background_marker({"snr_db": 12.0}) == "clean"


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
maybe = st.one_of(st.none(), st.just(math.nan), finite)


@settings(max_examples=200, deadline=None)
@given(rate=maybe, snr=maybe, bw=maybe, agr=maybe, qm=st.booleans())
def test_control_tokens_are_ordered_and_in_range(rate, snr, bw, agr, qm) -> None:
    v = Vocab()
    feats = {"speaking_rate": rate, "snr_db": snr, "bandwidth_hz": bw, "agreement": agr}
    ids = v.control_tokens(feats, quality_mode=qm)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(v.rate_offset <= i < v.size for i in ids)
    kinds = [v.describe(i).strip("<>").split(":")[0] for i in ids]
    expected = [k for k, x in (("rate", rate), ("snr_db", snr), ("bandwidth_hz", bw), ("agreement", agr))
                if x is not None and math.isfinite(x)]  # fmt: skip
    assert kinds == [*expected, "background", *(["quality_mode"] if qm else [])]


def test_quality_order_survives_a_key_sorting_json_writer() -> None:
    """Token ids follow the features' order; params.json writers may sort dict keys."""
    import json

    cfg = VocabConfig()
    assert list(cfg.quality_edges) != sorted(cfg.quality_edges)  # else this test proves nothing
    back = VocabConfig.from_dict(json.loads(json.dumps(cfg.to_dict(), sort_keys=True)))
    assert list(back.quality_edges) == list(cfg.quality_edges)
    assert Vocab(back).quality_offsets == Vocab(cfg).quality_offsets
    bad = {**cfg.to_dict(), "quality_features": ["snr_db"]}
    with pytest.raises(ValueError, match="quality_features"):
        VocabConfig.from_dict(bad)
