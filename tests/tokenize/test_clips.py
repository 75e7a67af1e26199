"""Which manifest clips a tokenize run takes: an ingest dir or a plain Parquet file, eligibility
re-applied with thresholds in any form the manifest reader takes."""

from __future__ import annotations

from accord.core.eligibility import load_thresholds
from accord.tokenize.clips import read_clips
from accord.tokenize.sample_manifest import clip_row, write_manifest


def test_ingest_dir_and_parquet_file_select_the_same_clips(tmp_path) -> None:
    short = clip_row("/a.wav", 0.0, 0.4, "hi", "en")  # 0.4 s: under pretrain's 0.5 s minimum
    good = clip_row("/a.wav", 1.0, 3.0, "long enough", "en")
    out = write_manifest([short, good], tmp_path / "ingest")
    part = str(out / "manifest" / "part-0.parquet")
    loose = {"pretrain": {"min_duration_s": 0.1}}
    for uri in (str(out), part):
        assert [c["clip_id"] for c in read_clips(uri)] == [good["clip_id"]], uri
        for thresholds in (loose, load_thresholds(loose)):  # a mapping, or thresholds already built
            got = read_clips(uri, thresholds=thresholds)
            assert sorted(c["clip_id"] for c in got) == sorted([short["clip_id"], good["clip_id"]]), uri
