"""The explorer's queries and routes on a real ingest output, checked against the manifest's own
readers (:func:`accord.core.manifest.read_manifest`, :func:`accord.core.eligibility.failures`)."""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path

import pytest
import soundfile as sf
from click.testing import CliRunner
from starlette.testclient import TestClient

from accord.cli.cmd_manifest import manifest
from accord.core.eligibility import DEFAULT_THRESHOLDS, failures, load_thresholds
from accord.core.manifest import read_errors, read_manifest
from accord.core.stages import STAGES
from accord.explore.app import create_app
from accord.explore.catalog import Catalog
from accord.explore.query import View, page, whatif

# What a person might try: a laxer anneal1 SNR and DNSMOS, a stricter pretrain agreement.
WHATIF = {"anneal1": {"min_snr_db": 8, "min_dnsmos_ovrl": 2.5}, "pretrain": {"min_agreement": 0.8}}


def tree(path: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.rglob("*"))
    }


@pytest.fixture(scope="module")
def served(explore_out):
    before = tree(explore_out.path)
    cat = Catalog(str(explore_out.path))
    client = TestClient(create_app(cat, DEFAULT_THRESHOLDS))
    yield cat, client
    cat.close()
    assert not cat.tmp.exists(), "the catalog's temp dir outlives it"
    assert tree(explore_out.path) == before, "the explorer wrote into the ingest output"


def ids(cat, view, th=DEFAULT_THRESHOLDS) -> set[str]:
    view.size = 500
    return {r["clip_id"] for r in page(cat, view, th, DEFAULT_THRESHOLDS)["rows"]}


def test_catalog_holds_every_clip_and_error(served, explore_out) -> None:
    cat, _ = served
    assert cat.n_clips == explore_out.n_clips == len(read_manifest(str(explore_out.path)))
    assert cat.n_errors == explore_out.n_errors == len(read_errors(str(explore_out.path))) > 0


@pytest.mark.parametrize("overrides", [None, WHATIF])
def test_stage_and_gate_filters_match_eligibility(served, explore_out, overrides) -> None:
    cat, _ = served
    th = load_thresholds(overrides)
    rows = read_manifest(str(explore_out.path), thresholds=th).to_pylist()
    for s in STAGES:
        eligible = {r["clip_id"] for r in rows if r[f"eligible_{s}"]}
        assert ids(cat, View(stage=s), th) == eligible
        assert ids(cat, View(stage=s, eligible=False), th) == {r["clip_id"] for r in rows} - eligible
    seen = set()
    for s in STAGES:
        for name in {g for r in rows for g in failures(r, th[s])}:
            want = {r["clip_id"] for r in rows if name in failures(r, th[s])}
            assert ids(cat, View(gate=(s, name)), th) == want, (s, name)
            seen.add(name)
    assert {"min_snr_db", "min_dnsmos_ovrl", "min_asr_systems", "reject_hallucinated"} <= seen


def test_whatif_counts_match_read_manifest(served, explore_out) -> None:
    cat, _ = served
    th = load_thresholds(WHATIF)
    got = whatif(cat, th, DEFAULT_THRESHOLDS)
    new = read_manifest(str(explore_out.path), thresholds=th).to_pylist()
    old = read_manifest(str(explore_out.path)).to_pylist()
    for s in STAGES:
        assert got[s]["clips"] == sum(r[f"eligible_{s}"] for r in new)
        assert got[s]["base_clips"] == sum(r[f"eligible_{s}"] for r in old)
        for lang, v in got[s]["languages"].items():
            kept = [r for r in new if r[f"eligible_{s}"] and (r["language"] or "-") == lang]
            assert v["clips"] == len(kept)
            assert math.isclose(v["hours"], sum(r["duration_s"] for r in kept) / 3600, abs_tol=1e-9)
        new_ids = {r["clip_id"] for r in new if r[f"eligible_{s}"]}
        old_ids = {r["clip_id"] for r in old if r[f"eligible_{s}"]}
        assert (got[s]["added"], got[s]["removed"]) == (len(new_ids - old_ids), len(old_ids - new_ids))
        added = ids(cat, View(changed=(s, "added")), th)
        assert added == new_ids - old_ids
    assert got["anneal1"]["added"] > 0 and got["pretrain"]["removed"] > 0


def test_text_language_range_sort_and_paging(served, explore_out) -> None:
    cat, _ = served
    rows = read_manifest(str(explore_out.path)).to_pylist()
    word = "river"
    want = {r["clip_id"] for r in rows if any(word in t["text"].lower() for t in r["transcripts"])}
    assert want and ids(cat, View(text=word)) == want
    assert ids(cat, View(language="de")) == {r["clip_id"] for r in rows if r["language"] == "de"} != set()
    v = View(ranges={"snr_db": (10.0, 20.0), "dnsmos_ovrl": (2.6, math.inf)})
    want = {r["clip_id"] for r in rows if 10 <= r["snr_db"] <= 20 and r["dnsmos_ovrl"] >= 2.6}
    assert ids(cat, v) == want != set()
    v = View(sort="dnsmos_ovrl", desc=True, size=len(rows))
    got = [r["dnsmos_ovrl"] for r in page(cat, v, DEFAULT_THRESHOLDS, DEFAULT_THRESHOLDS)["rows"]]
    measured = [x for x in got if x is not None and not math.isnan(x)]
    assert measured == sorted(measured, reverse=True) and got[: len(measured)] == measured  # NaN last
    pages = [page(cat, View(size=7, page=i), DEFAULT_THRESHOLDS, DEFAULT_THRESHOLDS) for i in range(20)]
    seen = [r["clip_id"] for p in pages for r in p["rows"]]
    assert len(seen) == len(set(seen)) == len(rows) and pages[0]["total"] == len(rows)


def test_exported_yaml_reads_back_with_manifest_stats(served, explore_out, tmp_path) -> None:
    _, client = served
    r = client.get("/export/thresholds.yaml", params={"th": json.dumps(WHATIF)})
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    path = tmp_path / "thresholds.yaml"
    path.write_text(r.text)
    assert load_thresholds(str(path)) == load_thresholds(WHATIF)
    res = CliRunner().invoke(manifest, ["stats", str(explore_out.path), "--thresholds", str(path), "--json"])
    assert res.exit_code == 0, res.output
    stats = json.loads(res.output)["by_stage_language"]
    counts = client.get("/api/whatif", params={"th": json.dumps(WHATIF)}).json()["stages"]
    for s in STAGES:
        assert stats[s]["*"]["clips"] == counts[s]["clips"]
        for lang, v in counts[s]["languages"].items():
            if v["clips"]:
                assert stats[s][lang]["clips"] == v["clips"]


def test_selection_export_lists_the_selection(served, explore_out) -> None:
    _, client = served
    r = client.get("/export/clips.csv", params={"gate": "anneal1:min_snr_db"})
    lines = r.text.strip().splitlines()
    assert lines[0].startswith("clip_id,source_uri,start_s,end_s")
    rows = read_manifest(str(explore_out.path)).to_pylist()
    want = {x["clip_id"] for x in rows if "min_snr_db" in failures(x, DEFAULT_THRESHOLDS["anneal1"])}
    assert {line.split(",")[0] for line in lines[1:]} == want


def test_audio_is_the_clip_segment_with_ranges(served, explore_out) -> None:
    _, client = served
    rows = read_manifest(str(explore_out.path)).to_pylist()
    for row in rows[:: max(1, len(rows) // 6)]:  # a few sources: WAV, FLAC, lossy
        r = client.get(f"/audio/{row['clip_id']}.wav")
        assert r.status_code == 200 and r.headers["accept-ranges"] == "bytes"
        assert int(r.headers["content-length"]) == len(r.content)
        info = sf.info(io.BytesIO(r.content))
        assert abs(info.duration - row["duration_s"]) < 0.03, (row["source_uri"], info.duration)
        part = client.get(f"/audio/{row['clip_id']}.wav", headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == r.content[100:200]
        assert part.headers["content-range"] == f"bytes 100-199/{len(r.content)}"
        w = client.get(f"/api/wave/{row['clip_id']}").json()
        assert w["t0"] <= row["start_s"] and w["t1"] >= row["end_s"] - 0.01 and len(w["min"]) > 100


def test_pages_render(served, explore_out) -> None:
    _, client = served
    home = client.get("/")
    assert home.status_code == 200 and "What-if thresholds" in home.text
    row = read_manifest(str(explore_out.path)).to_pylist()[1]
    clip = client.get(f"/clip/{row['clip_id']}", params={"th": json.dumps(WHATIF)})
    assert clip.status_code == 200
    assert all(t["system"] in clip.text for t in row["transcripts"])
    assert client.get("/clip/nope").status_code == 404
    errors = client.get("/errors")
    assert errors.status_code == 200 and "no_speech" in errors.text


@pytest.mark.parametrize(
    "params",
    [{"stage": "anneal3"}, {"gate": "anneal1:nope"}, {"sort": "x; DROP TABLE clips"}, {"min_snr_db": "abc"},
     {"th": "{not json"}, {"th": json.dumps({"anneal1": {"min_snr": 3}})}],
)  # fmt: skip
def test_bad_parameters_are_one_line_400s(served, params) -> None:
    _, client = served
    r = client.get("/api/clips", params=params)
    assert r.status_code == 400 and "\n" not in r.text.strip() and r.text


def test_cli_rejects_a_missing_output(tmp_path) -> None:
    from accord.cli.main import cli

    res = CliRunner().invoke(cli, ["manifest", "explore", str(tmp_path / "nothing"), "--port", "0"])
    assert res.exit_code == 2 and "no ingest output" in res.output, res.output
    assert os.listdir(tmp_path) == []
