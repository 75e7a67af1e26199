"""List the audio files of a raw bucket (folder, ``file://``, ``s3://``, ``gs://``) as sources.

Each becomes a :class:`accord.core.manifest.Source`, which carries what resuming needs: the
full URI, a cheap content fingerprint (size plus mtime, ETag or generation, from the listing
alone) and a ``key`` — a hash of the URI used for every output name, so no input name
(``../x``, ``/etc/x``, unicode, very long) decides where anything is written.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from typing import Any

import fsspec

from accord.core.errors import DANGLING_SYMLINK, NOT_A_FILE, UNSAFE_KEY, InputNotFound, error_row
from accord.core.manifest import Source
from accord.core.storage import is_local, open_fs, redact_uri

LIST_STEP = "list"  # the step name of listing errors
DEFAULT_EXTENSIONS: tuple[str, ...] = ("wav", "flac", "mp3", "ogg", "opus", "m4a", "aac", "webm", "mp4")

# Listing fields that change when the object's bytes change, by filesystem.
_VERSION_FIELDS = ("ETag", "etag", "md5Hash", "crc32c", "generation", "mtime", "LastModified", "updated")


@dataclass
class ListingResult:
    sources: list[Source]
    errors: list[dict[str, Any]]  # ERROR_SCHEMA-shaped rows (without run_id) for bad list entries


def _fingerprint(info: dict[str, Any]) -> str:
    parts = [str(info.get("size", ""))]
    for name in _VERSION_FIELDS:
        if info.get(name) not in (None, ""):
            parts.append(f"{name}={info[name]}")
            break
    return ";".join(parts)


def _full_uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    return path if is_local(fs) else fs.unstrip_protocol(path)


def _ext_ok(path: str, exts: tuple[str, ...]) -> bool:
    name = posixpath.basename(path).lower()
    return not name.startswith(".") and any(name.endswith("." + e) for e in exts)


def _error(uri: str, error_type: str, reason: str) -> dict[str, Any]:
    return error_row(uri, LIST_STEP, error_type, reason)


def classify(
    fs: fsspec.AbstractFileSystem, path: str, info: dict[str, Any]
) -> tuple[dict[str, Any] | None, str, str]:
    """``(info of the file to read, "", "")`` for a regular file or a link to one, else
    ``(None, error_type, reason)``: nothing named like audio is skipped without a word."""
    kind = info.get("type", "file")
    if info.get("islink") and is_local(fs):
        if not os.path.exists(path):
            return None, DANGLING_SYMLINK, f"symlink to {info.get('destination')!s}, which does not exist"
        if os.path.isdir(path):
            return None, NOT_A_FILE, "symlink to a directory: not followed (list its files, or ingest it)"
        if os.path.isfile(path):
            st = os.stat(path)  # the target's size and mtime: its bytes are what we read
            return {**info, "type": "file", "size": st.st_size, "mtime": st.st_mtime}, "", ""
    if kind == "file":
        return info, "", ""
    if kind == "directory":
        return None, NOT_A_FILE, "a directory named like an audio file"
    return None, NOT_A_FILE, f"not a regular file ({kind})"


def _read_list_file(list_file: str) -> list[str]:
    fs, path = open_fs(list_file)
    with fs.open(path, "rt", encoding="utf-8") as f:
        lines = [ln.strip() for ln in f]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def _resolve_entry(fs: fsspec.AbstractFileSystem, root: str, entry: str) -> tuple[str | None, str]:
    """``(path in fs or None, reason)``: a URL or absolute path as given, else relative to root."""
    if "://" in entry:
        efs, epath = open_fs(entry)
        if type(efs) is not type(fs):
            return None, "list entry is on a different filesystem than RAW_URI"
        return epath, ""
    if entry.startswith("/") and is_local(fs):
        return posixpath.normpath(entry), ""
    joined = posixpath.normpath(posixpath.join(root, entry.lstrip("/")))
    if not (joined == root or joined.startswith(root.rstrip("/") + "/")):
        return None, "relative list entry escapes RAW_URI"
    return joined, ""


def check_input(raw_uri: str, list_file: str | None = None) -> None:
    """``raw_uri`` exists (or, with ``list_file``, the list file does: its entries are checked
    one by one), else :class:`~accord.core.errors.InputNotFound`: one line naming it and what to
    pass instead."""
    if list_file is not None:
        fs, path = open_fs(list_file)
        if not fs.isfile(path):
            raise InputNotFound(
                f"list file not found: {redact_uri(list_file)} (pass --list a file with one input per line)"
            )
        return
    fs, root = open_fs(raw_uri)
    if not fs.exists(root):
        raise InputNotFound(
            f"input not found: {redact_uri(raw_uri)} (pass an existing folder, audio file or "
            "bucket prefix as RAW_URI)"
        )


def list_sources(
    raw_uri: str,
    extensions: tuple[str, ...] | list[str] = DEFAULT_EXTENSIONS,
    list_file: str | None = None,
) -> ListingResult:
    """Every matching audio file under ``raw_uri`` (recursive), or the entries of ``list_file``.

    Sorted by URI so runs and dry-runs see the same order. Missing or out-of-root list entries
    become error rows, not exceptions.
    """
    exts = tuple(e.lower().lstrip(".") for e in extensions)
    check_input(raw_uri, list_file)
    fs, root = open_fs(raw_uri)
    sources: dict[str, Source] = {}
    errors: list[dict[str, Any]] = []
    if list_file is None:
        entries = {root: fs.info(root)} if fs.isfile(root) else fs.find(root, withdirs=True, detail=True)
        for path, info in entries.items():
            if path == root and info.get("type") == "directory":
                continue
            parts = path[len(root) :].removeprefix("/").split("/") if path != root else []
            if any(p in ("", ".", "..") for p in parts):  # an object key, not a path: never normalised
                if _ext_ok(path, exts):
                    reason = "object key with an empty, '.' or '..' segment: not read (a client that "
                    errors.append(
                        _error(
                            _full_uri(fs, path), UNSAFE_KEY, reason + "normalises it reads another object)"
                        )
                    )
                continue
            if any(p.startswith(".") for p in parts):
                continue  # hidden files and folders
            linked_dir = bool(info.get("islink")) and is_local(fs) and os.path.isdir(path)
            if not (_ext_ok(path, exts) or linked_dir):
                continue  # other files, and the directories the walk goes into
            uri = _full_uri(fs, path)
            file_info, error_type, reason = classify(fs, path, info)
            if file_info is None:
                errors.append(_error(uri, error_type, reason))
                continue
            sources[uri] = Source.make(uri, file_info.get("size") or 0, _fingerprint(file_info))
    else:
        for entry in _read_list_file(list_file):
            path, reason = _resolve_entry(fs, root, entry)
            if path is None:
                errors.append(_error(entry, "bad_list_entry", reason))
                continue
            uri = _full_uri(fs, path)
            if not _ext_ok(path, exts):
                errors.append(_error(uri, "extension_filtered", f"extension not in {','.join(exts)}"))
                continue
            try:
                info = fs.info(path)
            except FileNotFoundError:
                if is_local(fs) and os.path.islink(path):  # info follows the link to nothing
                    info = {"type": "other", "islink": True, "destination": os.readlink(path)}
                else:
                    errors.append(_error(uri, "not_found", "listed file does not exist"))
                    continue
            file_info, error_type, reason = classify(fs, path, info)
            if file_info is None:
                errors.append(_error(uri, error_type, reason))
                continue
            sources[uri] = Source.make(uri, file_info.get("size") or 0, _fingerprint(file_info))
    return ListingResult(sources=sorted(sources.values()), errors=errors)
