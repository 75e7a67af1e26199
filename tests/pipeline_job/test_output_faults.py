"""Faults on an ingest output (#22): a truncated part repairs itself on the next run, every reader
names the file it cannot read, and a second run on a held output refuses without breaking the
first."""

from __future__ import annotations

from pathlib import Path

import pytest

from accord.core.errors import UnreadableFileError
from accord.core.lock import OutputBusyError
from accord.core.manifest import ManifestStore, Source, read_errors, read_manifest, to_row

from ..holders import first_run_holding


def _clip(uri: str, i: int) -> dict:
    return to_row({"clip_id": f"{uri}#{i}", "source_uri": uri, "start_s": float(i), "end_s": i + 1.0,
                   "duration_s": 1.0, "language": "en"}, "run1")  # fmt: skip


def _error(uri: str) -> dict:
    return {"input_uri": uri, "clip_id": None, "step": "vad", "error_type": "no_speech", "reason": "r",
            "run_id": "run1"}  # fmt: skip


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a crash or full disk mid-copy


@pytest.mark.parametrize("part", ["manifest", "errors"])
def test_a_truncated_part_is_redone_and_its_readers_name_it(tmp_path: Path, part: str) -> None:
    """The marker of a source whose part was truncated still matched, so a re-run skipped it for
    ever, and ``manifest stats``/``show``/tokenize died on pyarrow's ``'<Buffer>'``, naming no file."""
    out = str(tmp_path / "out")
    ms = ManifestStore(out)
    a, b = Source.make("/r/a.wav", 10, "10;mtime=1"), Source.make("/r/b.wav", 10, "10;mtime=1")
    ms.commit(a, [_clip(a.uri, 0)], [_error(a.uri)], "run1")
    ms.commit(b, [_clip(b.uri, 0)], [_error(b.uri)], "run1")
    bad = tmp_path / "out" / part / f"part-{a.key}.parquet"
    _truncate(bad)

    reader = read_manifest if part == "manifest" else read_errors
    with pytest.raises(UnreadableFileError) as e:
        reader(out)
    assert str(bad) in str(e.value) and "re-running the ingest" in str(e.value) and "\n" not in str(e.value)

    todo, done = ManifestStore(out).pending([a, b])
    assert todo == [a] and done == [b], "the truncated source is redone, the whole one is not"
    ManifestStore(out).commit(a, [_clip(a.uri, 0)], [_error(a.uri)], "run2")  # what the re-run does
    assert ManifestStore(out).pending([a, b]) == ([], [a, b])
    assert len(read_manifest(out, reapply=False)) == 2 and len(read_errors(out)) == 2


def test_a_dataset_reader_names_the_bad_file(tmp_path: Path) -> None:
    from accord.tokenize.clips import read_clips

    out = str(tmp_path / "out")
    a = Source.make("/r/a.wav", 10, "10;mtime=1")
    ManifestStore(out).commit(a, [_clip(a.uri, 0)], [], "run1")
    bad = tmp_path / "out" / "manifest" / f"part-{a.key}.parquet"
    _truncate(bad)
    for uri in (out, str(tmp_path / "out" / "manifest")):  # an ingest output, a dataset dir
        with pytest.raises(UnreadableFileError, match=a.key):
            read_clips(uri)


def test_a_second_ingest_on_a_held_output_refuses_before_touching_it(tmp_path: Path) -> None:
    from accord.pipeline.job.runner import run_ingest

    out, raw = tmp_path / "out", tmp_path / "raw"
    raw.mkdir()
    with first_run_holding(out) as (first, in_progress):
        before = sorted(p.relative_to(out) for p in out.rglob("*"))
        with pytest.raises(OutputBusyError, match=f"ingest run run-first .*pid {first.pid}"):
            run_ingest(str(raw), str(out))
        assert sorted(p.relative_to(out) for p in out.rglob("*")) == before and in_progress.exists()
