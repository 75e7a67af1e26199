"""The read stage: each clip from its source at 44.1 kHz, or an error row with a reason."""

from __future__ import annotations

import numpy as np
import soundfile as sf
from accord.tokenize.job import ReadStage, TokenizeConfig
from accord.tokenize.sample_manifest import clip_row


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
    out = ReadStage(TokenizeConfig(), "r1")([dict(r) for r in rows.values()])
    got = dict(zip(rows, out, strict=True))
    wav = got["ok"]["wav44"]
    assert wav.dtype == np.float32 and len(wav) == round(1.25 * 44100) and np.abs(wav).max() > 0.01
    for kind in ("bad_clip_id", "bad_span", "short_read", "empty_audio", "missing_source"):
        err = got[kind]["error"]
        assert err["error_type"] == kind and err["step"] == "tokenize:read" and err["run_id"] == "r1", err
        assert "wav44" not in got[kind]
