"""``accord ingest`` from and to a real S3 endpoint (moto's server on localhost).

The same path a user takes with any S3-compatible store: ``AWS_ENDPOINT_URL`` and credentials in
the environment, ``s3://`` URIs on the command line. The ingest runs in a subprocess on an
embedded Ray whose workers decode the sources straight from the bucket, so a passing run also
shows the endpoint reaches Ray workers. Then the driver-side readers (manifest, errors, run
records, tokenize's clip reader) read it back, a re-run processes nothing, and keys that try to
leave their root never put anything outside the output prefix.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from subprocess import CompletedProcess

import pyarrow as pa
import pytest

from accord.core.manifest import read_errors, read_manifest
from accord.core.runs import read_run_records

from .s3_server import environment, forget_s3_clients, moto_s3  # noqa: F401 - moto_s3 is the session fixture

pytestmark = pytest.mark.integration

BUCKET = "accord-ingest"
SPEECH = "en_espeak_us.wav"  # four English sentences, clean
FILES = (SPEECH, "en_flite_rms.webm", "noise_only.flac")  # wav, webm through ffmpeg, no speech
# A literal S3 key under raw/ whose POSIX normalisation ("dot-segments.wav") lies outside raw/.
DOT_KEY = "raw/sub/../../dot-segments.wav"
ESCAPING_LIST = "../outside.wav\nsub/../../outside.wav\n"  # --list entries relative to raw/


@dataclass
class Run:
    proc: CompletedProcess
    before: set[str]  # the bucket's keys before the run
    after: set[str]
    record: dict

    @property
    def new_keys(self) -> set[str]:
        return self.after - self.before


@pytest.fixture(scope="module")
def s3(moto_s3):  # noqa: F811 - the imported fixture, by name
    """The server, with this process's environment pointed at it for the module's readers."""
    with environment(moto_s3.env):
        yield moto_s3


@pytest.fixture(scope="module")
def bucket(s3, sample_bucket) -> str:
    uri = s3.make_bucket(BUCKET)
    fs = s3.fs()
    for name in FILES:
        fs.put_file(str(sample_bucket.path / name), f"{BUCKET}/raw/{name}")
    fs.put_file(str(sample_bucket.path / SPEECH), f"{BUCKET}/{DOT_KEY}")
    fs.pipe(f"{BUCKET}/lists/escape.txt", ESCAPING_LIST.encode())
    assert f"{BUCKET}/{DOT_KEY}" in fs.find(BUCKET), "the endpoint normalised the key; test is moot"
    return uri


def _keys(s3) -> set[str]:
    """Every object key of the bucket, listed afresh."""
    return {p.split("/", 1)[1] for p in s3.fs().find(BUCKET)}


def _ingest(s3, run_accord, make_env, *args: str) -> tuple[CompletedProcess, set[str], set[str]]:
    before = _keys(s3)
    # make_env keeps its credential-looking secret (checked below never to be printed); moto takes any.
    env = make_env(**{k: v for k, v in s3.env.items() if k != "AWS_SECRET_ACCESS_KEY"})
    proc = run_accord("ingest", *args, "--num-cpus", "2", "--no-progress", timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    forget_s3_clients()  # this process's readers must list what the subprocess wrote
    return proc, before, _keys(s3)


def _record(out_uri: str, before: set[str], after: set[str], prefix: str) -> dict:
    (new_record,) = [k for k in after - before if k.startswith(f"{prefix}/runs/")]
    records, problems = read_run_records(out_uri)
    assert not problems
    (record,) = [r for r in records if new_record.endswith(f"/{r['run_id']}.json")]
    return record


def _ipc(table: pa.Table) -> bytes:
    """A table's bytes: equal tables compare equal even where they hold NaN (Table.equals: never)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


@pytest.fixture(scope="module")
def first(s3, bucket, run_accord, make_env) -> Run:
    proc, before, after = _ingest(s3, run_accord, make_env, f"{bucket}/raw", "--out", f"{bucket}/out")
    return Run(proc, before, after, _record(f"{bucket}/out", before, after, "out"))


def test_manifest_and_run_record_are_written_to_the_bucket(first, bucket, secret) -> None:
    assert first.record["status"] == "succeeded"
    counts = first.record["counts"]
    assert counts["sources_listed"] == counts["sources_to_process"] == len(FILES)
    assert all(k.startswith("out/") for k in first.new_keys), sorted(first.new_keys)
    assert not [k for k in first.new_keys if ".tmp-" in k]
    dirs = {posixpath.dirname(k) for k in first.new_keys}
    assert {"out/manifest", "out/_state/done", "out/runs"} <= dirs
    assert len([k for k in first.new_keys if k.startswith("out/_state/done/")]) == len(FILES)
    assert secret not in first.proc.stdout + first.proc.stderr

    rows = read_manifest(f"{bucket}/out").to_pylist()
    assert {r["source_uri"] for r in rows} <= {f"{bucket}/raw/{n}" for n in FILES}
    speech = [r for r in rows if r["source_uri"] == f"{bucket}/raw/{SPEECH}"]
    assert len(speech) >= 3, speech  # decoded from the bucket inside Ray workers, cut and transcribed
    for r in speech:
        assert r["duration_s"] > 0.5
        assert all(t["text"].strip() for t in r["transcripts"]), r["transcripts"]
    errors = read_errors(f"{bucket}/out")
    assert set(errors.column_names) >= {"input_uri", "step", "error_type"}


def test_tokenize_reads_the_clips_from_the_bucket(first, bucket) -> None:
    from accord.tokenize.clips import read_clips

    clips = read_clips(f"{bucket}/out", "pretrain")
    manifest = read_manifest(f"{bucket}/out", stage="pretrain")
    assert sorted(c["clip_id"] for c in clips) == sorted(manifest.column("clip_id").to_pylist())
    assert clips and all(c["source_uri"].startswith(f"{bucket}/raw/") for c in clips)


def test_resumed_run_processes_nothing(first, s3, bucket, run_accord, make_env) -> None:
    fs = s3.fs()
    # a source's manifest part and its marker are rewritten only when it is processed again
    parts = sorted(k for k in first.after if k.startswith(("out/manifest/", "out/_state/done/")))
    etags = {k: fs.info(f"{BUCKET}/{k}")["ETag"] for k in parts}
    manifest = read_manifest(f"{bucket}/out")

    _, before, after = _ingest(s3, run_accord, make_env, f"{bucket}/raw", "--out", f"{bucket}/out")
    record = _record(f"{bucket}/out", before, after, "out")
    assert record["status"] == "succeeded"
    assert record["counts"]["sources_skipped_done"] == len(FILES)
    assert record["counts"]["sources_to_process"] == 0
    assert after - before == {f"out/runs/{record['run_id']}.json"}  # only the run record is new
    assert {k: fs.info(f"{BUCKET}/{k}")["ETag"] for k in parts} == etags  # none rewritten
    assert _ipc(read_manifest(f"{bucket}/out")) == _ipc(manifest)


def test_dot_segment_key_writes_nothing_outside_the_output(first, bucket) -> None:
    """The key is read as itself or not at all, never as the object its normalisation names."""
    assert all(k.startswith("out/") for k in first.new_keys)
    uris = {r["source_uri"] for r in read_manifest(f"{bucket}/out").to_pylist()}
    uris |= set(read_errors(f"{bucket}/out").column("input_uri").to_pylist())
    assert f"{bucket}/dot-segments.wav" not in uris


def test_dot_segment_key_is_reported(first, bucket) -> None:
    """Every input named like audio is ingested or reported: this key as ``unsafe_key``."""
    errors = [e for e in read_errors(f"{bucket}/out").to_pylist() if e["input_uri"] == f"{bucket}/{DOT_KEY}"]
    assert [(e["step"], e["error_type"]) for e in errors] == [("list", "unsafe_key")]


def test_list_entries_escaping_the_input_root_are_refused(s3, bucket, run_accord, make_env) -> None:
    out = f"{bucket}/out-list"
    _, before, after = _ingest(
        s3, run_accord, make_env, f"{bucket}/raw", "--out", out, "--list", f"{bucket}/lists/escape.txt"
    )
    assert after - before and all(k.startswith("out-list/") for k in after - before), sorted(after - before)
    record = _record(out, before, after, "out-list")
    assert record["counts"]["list_errors"] == 2 and record["counts"]["sources_to_process"] == 0
    errors = read_errors(out).to_pylist()
    assert sorted(e["input_uri"] for e in errors) == sorted(ESCAPING_LIST.split())
    assert {(e["step"], e["error_type"]) for e in errors} == {("list", "bad_list_entry")}
    assert not [k for k in after if posixpath.basename(k) == "outside.wav"]
