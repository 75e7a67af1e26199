"""Malformed inputs: each lands in errors/ with its reason, the job exits 0, good clips survive."""

from __future__ import annotations

from pathlib import Path

import pytest

from accord.core.manifest import read_errors, read_manifest

pytestmark = pytest.mark.integration


def test_malformed_bucket(malformed_bucket, tmp_path, run_accord) -> None:
    out = tmp_path / "out"
    lst = tmp_path / "list.txt"  # plus a listed file that does not exist
    names = sorted(p.name for p in malformed_bucket.path.iterdir())
    lst.write_text("\n".join([*names, "does_not_exist.wav"]) + "\n")
    proc = run_accord(
        "ingest",
        str(malformed_bucket.path),
        "--out",
        str(out),
        "--list",
        str(lst),
        "--num-cpus",
        "2",
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    errors = read_errors(str(out)).to_pylist()
    by_file: dict[str, list[dict]] = {}
    for e in errors:
        by_file.setdefault(Path(e["input_uri"]).name, []).append(e)
        assert e["reason"] and e["step"] and e["run_id"]
    for name, kind in malformed_bucket.expected.items():
        if kind is None:
            assert name not in by_file, f"good file {name} has errors: {by_file.get(name)}"
        else:
            kinds = [e["error_type"] for e in by_file.get(name, [])]
            assert kinds == [kind], f"{name}: expected [{kind!r}], got {kinds}"
    assert [e["error_type"] for e in by_file["does_not_exist.wav"]] == ["not_found"]

    clips = read_manifest(str(out)).to_pylist()
    for name, sentences in malformed_bucket.speech.items():
        mine = [c for c in clips if Path(c["source_uri"]).name == name]
        for s in sentences:  # no good clip is lost
            assert any(
                abs(c["start_s"] - s["start_s"]) <= 0.3 and abs(c["end_s"] - s["end_s"]) <= 0.3 for c in mine
            ), (
                name,
                s,
                [(c["start_s"], c["end_s"]) for c in mine],
            )
    assert {Path(c["source_uri"]).name for c in clips} <= {
        n for n, k in malformed_bucket.expected.items() if k is None
    }
