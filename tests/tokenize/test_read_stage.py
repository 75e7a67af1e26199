"""The read step: each clip from its source at 44.1 kHz, or an error row with a reason."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from accord.jobs.rows import ERROR, ITEM, Unit, iter_unit, unpack
from accord.tokenize.config import TokenizeConfig
from accord.tokenize.sample_manifest import clip_row
from accord.tokenize.steps import ReadStep, ShardClipsStep


def test_reads_spans_and_reports_bad_ones(sample_bucket, tmp_path) -> None:
    src = str(sample_bucket.path / "en_flite_slt.flac")
    dur = sf.info(src).duration
    rows = {
        "ok": clip_row(src, 1.0, 2.25, "a", "en"),
        "bad_clip_id": clip_row(src, 1.0, 2.0, "b", "en") | {"clip_id": "x.y"},
        "bad_span": clip_row(src, 1.0, 1.1, "c", "en"),
        "short_read": clip_row(src, dur - 0.5, dur + 0.5, "d", "en"),  # the source ends mid-clip
        "empty_audio": clip_row(src, dur + 5.0, dur + 6.0, "d", "en"),
        "missing_source": clip_row(str(tmp_path / "nope.flac"), 0.0, 1.0, "e", "en"),
    }
    shard = Unit("shard-000000", {"shard": 0, "clips": list(rows.values())})
    out = list(iter_unit([ShardClipsStep(), ReadStep(TokenizeConfig())], shard, bundle=4))
    assert [r["kind"] for r in out] == [ERROR] * 5 + [ITEM, "unit"]  # a bundle leaves when full or at the end
    (item, w), *rest = unpack(out[5])
    wav = item["wav44"]
    assert not rest and w == 1 and item["clip_id"] == rows["ok"]["clip_id"]
    assert wav.dtype == np.float32 and len(wav) == round(1.25 * 44100) and np.abs(wav).max() > 0.01
    errors = [unpack(r)[0] for r in out[:5]]
    for kind, err in zip(list(rows)[1:], errors, strict=True):
        assert err["error_type"] == kind and err["step"] == "tokenize:read", err
        assert err["clip_id"] == rows[kind]["clip_id"] and err["input_uri"] == rows[kind]["source_uri"]
    assert unpack(out[-1])["n_expected"] == 6
