"""Input listing and safe output keys: local, file:// and an fsspec object store (memory://)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from accord.core.manifest import ManifestStore, read_errors
from accord.core.storage import Store, check_output_key, redact_uri
from accord.pipeline.sources import list_sources, source_key


def _touch(p: Path, data: bytes = b"x") -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def _tree(root: Path, out: Path) -> list[str]:
    """Every file under ``root`` except those inside ``out``."""
    files = []
    for d, _, names in os.walk(root):
        files += [os.path.join(d, n) for n in names if not os.path.join(d, n).startswith(str(out) + "/")]
    return sorted(files)


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    root = tmp_path / "raw"
    _touch(root / "a.wav")
    _touch(root / "sub" / "b.FLAC", b"yy")
    _touch(root / "sub" / "deeper" / "c.mp3")
    _touch(root / "notes.txt")
    _touch(root / ".hidden.wav")
    _touch(root / ".cache" / "d.wav")
    return root


def test_lists_recursively_with_extension_filter(raw: Path) -> None:
    res = list_sources(str(raw), ("wav", "flac", "mp3"))
    names = [Path(s.uri).relative_to(raw).as_posix() for s in res.sources]
    assert names == ["a.wav", "sub/b.FLAC", "sub/deeper/c.mp3"]  # sorted, hidden skipped, case-insensitive
    assert res.errors == []
    b = res.sources[1]
    assert b.size == 2 and b.fingerprint.startswith("2;") and b.key == source_key(b.uri)
    only_wav = list_sources(str(raw), ("wav",))
    assert [Path(s.uri).name for s in only_wav.sources] == ["a.wav"]


def test_file_uri_lists_the_same_sources(raw: Path) -> None:
    assert list_sources(f"file://{raw}").sources == list_sources(str(raw)).sources


def test_fingerprint_changes_with_content(raw: Path) -> None:
    before = list_sources(str(raw)).sources[0]
    os.utime(raw / "a.wav", ns=(1, 1))
    (raw / "a.wav").write_bytes(b"longer now")
    after = list_sources(str(raw)).sources[0]
    assert before.uri == after.uri and before.key == after.key
    assert before.fingerprint != after.fingerprint


def test_list_file_relative_absolute_escaping_and_missing(raw: Path, tmp_path: Path) -> None:
    outside = _touch(tmp_path / "elsewhere" / "e.wav")
    lst = tmp_path / "list.txt"
    lst.write_text(
        "# comment\n\na.wav\nsub/b.FLAC\n../elsewhere/e.wav\n"
        f"{outside}\nmissing.wav\nnotes.txt\nsub/../a.wav\n"
    )
    res = list_sources(str(raw), ("wav", "flac"), list_file=str(lst))
    uris = [s.uri for s in res.sources]
    assert uris == sorted({str(raw / "a.wav"), str(raw / "sub/b.FLAC"), str(outside)})
    kinds = sorted(e["error_type"] for e in res.errors)
    assert kinds == ["bad_list_entry", "extension_filtered", "not_found"]
    assert all(e["step"] == "list" for e in res.errors)


def test_hostile_names_never_write_outside_out(raw: Path, tmp_path: Path) -> None:
    """Sources named with ../, absolute paths and odd characters: every output stays under OUT."""
    weird = _touch(raw / "x" / "..." / "ü n i;code $(rm).wav")
    lst = tmp_path / "list.txt"
    lst.write_text(f"../../../../etc/passwd.wav\n{weird}\n/nonexistent/../../abs.wav\na.wav\n")
    out = tmp_path / "deep" / "out"
    before = _tree(tmp_path, out)
    res = list_sources(str(raw), ("wav",), list_file=str(lst))
    ms = ManifestStore(str(out))
    for s in res.sources:
        ms.commit(s, [], [{"input_uri": s.uri, "clip_id": None, "step": "decode", "error_type": "x",
                           "reason": "r", "run_id": "r1"}], "r1")  # fmt: skip
    for e in res.errors:
        from accord.pipeline.sources import Source

        ms.commit(Source.make(e["input_uri"], 0, ""), [], [{**e, "run_id": "r1"}], "r1", mark_done=False)
    after = _tree(tmp_path, out)
    assert before == after, "something was written outside OUT"
    written = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()]
    assert written and all(p.split("/")[0] in ("errors", "_state") for p in written)
    errors = read_errors(str(out))
    assert len(errors) == len(res.sources) + len(res.errors)


@pytest.mark.parametrize("key", ["../x", "/abs", "a/../b", "a//b", "", "a\\b", ".", "x/./y"])
def test_check_key_rejects_unsafe(key: str) -> None:
    with pytest.raises(ValueError):
        check_output_key(key)


def test_redact_uri_drops_credentials() -> None:
    assert redact_uri("s3://AKIA:secret@bucket/p/a.wav?X-Amz-Signature=abc") == "s3://bucket/p/a.wav"
    assert redact_uri("https://user:pw@host:8443/x?token=t") == "https://host:8443/x"
    assert redact_uri("/local/path.wav") == "/local/path.wav"


def test_object_store_listing_and_atomic_writes() -> None:
    """fsspec's in-memory filesystem stands in for s3/gs: same code path (non-local Store)."""
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket-t/raw/one.wav", b"abc")
    fs.pipe("/bucket-t/raw/two/two.flac", b"abcd")
    fs.pipe("/bucket-t/raw/skip.txt", b"a")
    res = list_sources("memory://bucket-t/raw")
    uris = [s.uri for s in res.sources]
    assert [u.split("bucket-t/raw/")[1] for u in uris] == ["one.wav", "two/two.flac"]
    assert all(u.startswith("memory://") for u in uris)
    assert list_sources(uris[0]).sources == res.sources[:1]  # a listed URI lists back to itself
    store = Store("memory://bucket-t/out")
    assert not store.local
    store.write_bytes("a/b.json", b"{}")
    assert store.read_bytes("a/b.json") == b"{}"
    assert store.list("a", ".json") == ["a/b.json"]
    assert store.url("a/b.json").startswith("memory://") and store.url("a/b.json").endswith(
        "bucket-t/out/a/b.json"
    )
    assert not [p for p in fs.find("/bucket-t/out") if ".tmp-" in p]
    fs.rm("/bucket-t", recursive=True)


def test_walk_reports_links_and_folders_named_like_audio(tmp_path) -> None:
    """Nothing named like audio is skipped without a word; a link to a file is read."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.wav").write_bytes(b"RIFF")
    (tmp_path / "link.wav").symlink_to("sub/a.wav")
    (tmp_path / "dangling.wav").symlink_to("gone.wav")
    (tmp_path / "folder.flac").mkdir()
    (tmp_path / "linked_dir").symlink_to("sub")
    (tmp_path / "notes.txt").write_text("not audio")
    res = list_sources(str(tmp_path))
    assert sorted(Path(s.uri).name for s in res.sources) == ["a.wav", "link.wav"]
    link = next(s for s in res.sources if s.uri.endswith("link.wav"))
    assert link.size == 4, "a link's size and fingerprint are its target's"
    kinds = {Path(e["input_uri"]).name: e["error_type"] for e in res.errors}
    want = {"dangling.wav": "dangling_symlink", "folder.flac": "not_a_file", "linked_dir": "not_a_file"}
    assert kinds == want
    assert all(e["step"] == "list" and e["reason"] for e in res.errors)
