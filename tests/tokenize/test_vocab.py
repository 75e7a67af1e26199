"""Vocabulary layout (ZONOS2 order), control tokens from features, config round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
from accord.tokenize.vocab import (
    BACKGROUND_MARKERS,
    BOS_ID,
    BYTE_OFFSET,
    EOS_ID,
    Vocab,
    VocabConfig,
)
from hypothesis import given, settings
from hypothesis import strategies as st


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
    assert [v.describe(i) for i in ids] == ["<snr_db:0>", "<background:noise>"]
    assert v.background_marker({"background": "music", "snr_db": 40.0}) == "music"
    with pytest.raises(KeyError):
        v.background_token("rain")
    assert set(BACKGROUND_MARKERS) == {"clean", "noise", "music"}


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
