"""The report's readers, layout discovery and HTML, without a browser."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from accord.cli.cmd_report import report
from accord.core.stages import STAGES
from accord.report import ReportConfig, build_report, discover
from accord.report.collect import read_ingest, read_metrics_file, read_train

from ._artifacts import clip_rows, espeak_wav


def test_hours_kept_reapply_eligibility(built_report) -> None:
    """On disk every eligible_* flag is False; the report recomputes them with the thresholds in force."""
    from accord.core.eligibility import eligible

    ingest = read_ingest(built_report.run_dir / "ingest")
    kept = ingest.hours_kept()
    rows = built_report.facts["rows"]
    for s in STAGES:
        want = sum(r["duration_s"] for r in rows if eligible(r, None)[s]) / 3600
        assert kept[s] == pytest.approx(want), s
    assert kept["pretrain"] > kept["anneal2"] > 0, "thresholds are monotone and the rows span them"
    assert ingest.hours_in == pytest.approx(4 * 60 / 3600)
    assert len(ingest.errors) == built_report.facts["n_errors"]


def test_report_html_is_self_contained(built_report) -> None:
    page = built_report.html.read_text()
    assert "<link" not in page and not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert page.count('src="data:image/png;base64,') >= 4
    meta = re.search(r"<script type='application/json' id='accord-report-meta'>(.*?)</script>", page).group(1)
    assert json.loads(meta)["inputs"]["train RUN"].endswith("train")
    for s in STAGES:
        assert f"kept for {s}" in page
    assert "ASR of the synthesis" in page and "the report" in page  # the mini-eval's per-sentence table
    assert "debug-scale model" in page


def test_truncated_metrics_line_is_skipped_and_counted(built_report) -> None:
    train = read_train(built_report.run_dir / "train")
    by_stage = {s.stage: s for s in train.stages}
    assert [s.stage for s in train.stages] == list(STAGES)
    assert len(by_stage["midtrain"].metrics) == 20
    assert any("midtrain: skipped 1 unreadable line" in n for n in train.notes)
    assert all(s.loss_key == "loss" and s.evals and s.exported for s in train.stages)


def test_single_stage_run_dir(built_report) -> None:
    """``accord train anneal1 --run DIR`` writes DIR/metrics.jsonl; the stage name comes from config.json."""
    stage_dir = built_report.run_dir / "train" / "anneal1"
    inputs = discover(None, train=stage_dir)
    train = read_train(inputs.train)
    assert [s.stage for s in train.stages] == ["anneal1"]
    (sr,) = train.stages
    assert len(sr.metrics) == 20 and sr.exported and sr.evals[0][1]["wer"] == pytest.approx(0.8)


def test_csv_metrics_and_resumed_steps(tmp_path) -> None:
    f = tmp_path / "metrics.csv"
    f.write_text("step,loss,lr\n1,5.0,0.1\n2,4.0,0.1\n2,3.5,0.1\n3,nan,0.1\n")
    rows, bad = read_metrics_file(f)
    assert bad == 0
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[1]["loss"] == 3.5, "a re-logged step keeps its last value"
    assert "loss" not in rows[2], "NaN is dropped, not plotted"


def test_missing_parts_become_notes(tmp_path) -> None:
    wav = espeak_wav(tmp_path / "synth.wav", "Only audio here.")
    out = build_report(discover(tmp_path), tmp_path / "r" / "report.html")
    page = out.read_text()
    assert "no ingest OUT dir given or found" in page and "no train RUN dir given or found" in page
    assert page.count("<audio") == 1 and wav.name in page


def test_large_audio_is_linked_beside_the_report(tmp_path) -> None:
    espeak_wav(tmp_path / "synth.wav", "A longer sentence than the embedding limit allows.")
    cfg = ReportConfig(embed_audio_max_mb=1e-6)
    out = build_report(discover(tmp_path), tmp_path / "out" / "report.html", cfg)
    page = out.read_text()
    assert 'src="media/synth.wav"' in page
    assert (tmp_path / "out" / "media" / "synth.wav").stat().st_size > 1000


def test_damaged_manifest_file_does_not_stop_the_report(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from accord.core.clip import CLIP_SCHEMA

    ingest = tmp_path / "ingest"
    (ingest / "manifest").mkdir(parents=True)
    good = pa.Table.from_pylist(clip_rows(6), schema=CLIP_SCHEMA)
    pq.write_table(good, ingest / "manifest" / "part-0.parquet")
    (ingest / "manifest" / "part-1.parquet").write_bytes(b"PAR1 not really parquet")
    data = read_ingest(ingest)
    assert data.notes, "the damage is reported"
    assert data.clips is not None and len(data.clips) == 6, "the readable part is still shown"
    build_report(discover(None, ingest=ingest), tmp_path / "report.html")


def test_discover_accepts_an_ingest_dir_as_run_dir(built_report) -> None:
    inputs = discover(built_report.run_dir / "ingest")
    assert inputs.ingest == built_report.run_dir / "ingest"
    assert inputs.train is None and inputs.synth == []


def test_cli_errors_are_clear(tmp_path) -> None:
    res = CliRunner().invoke(report, ["--out", str(tmp_path / "r.html")])
    assert res.exit_code == 2 and "give RUN_DIR" in res.output
    res = CliRunner().invoke(report, ["--out", str(tmp_path / "r.html"), "--train", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_cli_is_registered() -> None:
    from accord.cli.main import cli

    res = CliRunner().invoke(cli, ["report", "--help"])
    assert res.exit_code == 0 and "--synth" in res.output
