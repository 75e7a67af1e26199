"""Error rows: the schema, the one row builder, and the kinds of per-item failure.

Ingest writes rows of ``ERROR_SCHEMA`` to ``OUT/errors/``, tokenize to ``SHARDS/errors/``;
every failed source or clip becomes one row and the job carries on. The kind strings are a
contract with the malformed-corpus generator: ``accord.samples.malformed`` generates files that must fail
with exactly these kinds, and ``errors/`` rows carry them in ``error_type``. A test keeps the
two in step; pipeline code imports them from here only, never from test-data code.

Also the user's mistakes (:class:`UserError`): what the CLI reports as one line and exit 2.
"""

from __future__ import annotations

import traceback
from typing import Any

import pyarrow as pa

from accord.core.clip import SCHEMA_VERSION


class UserError(Exception):
    """A mistake in what the user gave (a config key or value, a flag, an input path): its
    message names the problem and the fix. The CLI prints it as one line and exits 2
    (:mod:`accord.cli.main`); library callers see an ordinary exception."""


class ConfigError(UserError, ValueError):
    """A wrong config key, value or file (a ``ValueError``, so callers that catch those still do)."""


class InputNotFound(UserError, FileNotFoundError):  # noqa: N818 - reads as what happened
    """An input the user named (a path, a URI, a file) that does not exist."""


class UnreadableFileError(UserError, ValueError):
    """A file that exists but cannot be decoded (truncated, corrupt); the message names it and
    how to repair it."""


EMPTY_FILE = "empty_file"  # zero bytes
NOT_AUDIO = "not_audio"  # bytes that no demuxer recognises as audio
DECODE_ERROR = "decode_error"  # recognised, but decoding failed (corrupt or truncated stream)
NAN_SAMPLES = "nan_samples"  # decoded samples contain NaN or inf
EMPTY_AUDIO = "empty_audio"  # decodes to zero samples
NO_SPEECH = "no_speech"  # decodes fine, but VAD finds no speech clip
DANGLING_SYMLINK = "dangling_symlink"  # an input named like audio that links to nothing
NOT_A_FILE = "not_a_file"  # named like audio but a directory, a linked directory, a FIFO, ...
UNSAFE_KEY = "unsafe_key"  # an object key with an empty, "." or ".." segment: never read

ERROR_KINDS: tuple[str, ...] = (
    EMPTY_FILE, NOT_AUDIO, DECODE_ERROR, NAN_SAMPLES, EMPTY_AUDIO, NO_SPEECH, DANGLING_SYMLINK, NOT_A_FILE,
    UNSAFE_KEY,
)  # fmt: skip
LISTING_KINDS: tuple[str, ...] = (DANGLING_SYMLINK, NOT_A_FILE, UNSAFE_KEY)  # found by listing: never decoded
# No local file has such a name: the malformed corpus cannot hold it, the S3-server test does.
OBJECT_STORE_KINDS: tuple[str, ...] = (UNSAFE_KEY,)

# Failures of the item's own data: the same input fails the same way every time, so a source whose
# only errors are these is done. Any other error (a model that raised, every ASR system failing on
# a clip, a worker that died) may pass next time: its source gets no completion marker and the
# next run retries it, so no clip is lost to a transient or since-fixed failure.
DATA_ERROR_KINDS: tuple[str, ...] = (
    *ERROR_KINDS, "bad_item", "bad_audio", "non_finite_audio", "dropped", "not_found",
)  # fmt: skip


def retriable(row: dict[str, Any]) -> bool:
    """Whether an error row's input may succeed on a re-run (see ``DATA_ERROR_KINDS``)."""
    return row.get("error_type") not in DATA_ERROR_KINDS


def no_speech_only(error_rows: list[dict[str, Any]]) -> bool:
    """A source whose only errors say it holds no speech: not a failure, just not speech."""
    return bool(error_rows) and all(e.get("error_type") == NO_SPEECH for e in error_rows)


ERROR_SCHEMA = pa.schema(
    [
        ("input_uri", pa.string()),
        ("clip_id", pa.string()),  # null when the whole input failed
        ("step", pa.string()),  # e.g. "decode", "vad", "asr:moonshine", "tokenize:dac"
        ("error_type", pa.string()),  # exception class or a short code, e.g. "empty_file"
        ("reason", pa.string()),  # human-readable, never contains credentials
        ("run_id", pa.string()),
    ],
    metadata={"accord.core.clip": "error", "accord.schema_version": str(SCHEMA_VERSION)},
)

MAX_REASON_CHARS = 2000


def error_row(
    input_uri: str | None,
    step: str,
    error_type: str,
    reason: str,
    run_id: str | None = None,
    clip_id: str | None = None,
) -> dict[str, Any]:
    """An ``ERROR_SCHEMA`` row (``reason`` cut to ``MAX_REASON_CHARS``)."""
    return {
        "input_uri": input_uri,
        "clip_id": clip_id,
        "step": step,
        "error_type": error_type,
        "reason": str(reason)[:MAX_REASON_CHARS],
        "run_id": run_id,
    }


def error_from_exception(
    input_uri: str | None,
    step: str,
    exc: BaseException,
    clip_id: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """The row of one item's failure: an exception that carries ``error_type`` and ``reason``
    (``ItemError``, ``AudioError``) keeps them; any other is its class name and where it was
    raised, so an unexpected bug is still one item's error, findable in the code."""
    etype, reason = getattr(exc, "error_type", None), getattr(exc, "reason", None)
    step = getattr(exc, "step", None) or step
    if not (etype and reason):
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else ""
        etype, reason = type(exc).__name__, f"{exc}{where}"
    return error_row(input_uri, step, etype, reason, run_id, clip_id)


def error_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=ERROR_SCHEMA)
