"""The shard format: WebDataset tars of tokenized clips, their Parquet tables, and ``tokenize.json``.

The writer and the reader live side by side here and share one record, :class:`ShardSample`
(its fields name the members: ``codes`` is ``<key>.codes.npy`` on disk, ``meta`` is
``<key>.json``); tokenize writes through :class:`ShardWriter`, the trainer, the LDA fit, the
report and ``accord tokenize decode`` read through :func:`read_shard`, :func:`read_samples` and
:func:`read_tokenize_json`.

Layout under ``SHARDS_URI``::

    shards/shard-000000.tar     WebDataset tar; sample key = clip_id; members codes.npy (int16
                                [9, T]), spk.npy, spkcrop.npy, spkaug.npy, json (the clip row:
                                ``accord.core.clip.sample_meta``)
    shards/shard-000000.done    JSON marker written last: the shard is complete; records what a
                                reader checks the tar against (:class:`ShardRecord`): n_samples,
                                bytes, one checksum per sample and the shard's ``checksum``
    parts/shard-000000.parquet  per-sample rows of that shard (-> samples.parquet)
    errors/shard-000000.parquet ERROR_SCHEMA rows of clips that failed in that shard
    index.parquet               one row per shard: counts and hours per stage and language,
                                ``random_weights``: the model refs its codes/embeddings came from
                                with random weights (sorted; [] = all trained; null = not recorded),
                                and the marker's ``checksum`` (null: written before checksums)
    samples.parquet             one row per sample (``SAMPLE_SCHEMA``): what the trainer samples
    tokenize.json               the run's models and settings, with the same ``random_weights``
    lda.npz                     the speaker LDA projection (``accord tokenize fit-lda``)
    runs/<run_id>.json          one record per tokenize run

Clips are assigned to shards deterministically (sorted by clip id, chunked by estimated bytes
and a sample cap), so a re-run recomputes the same plan and skips every shard whose tar and
done marker exist and whose marker records the same clip set.

Integrity: a reader given the shard's record (:func:`read_record`) detects a changed byte
anywhere that matters. Content: each sample's members are hashed at write time
(:func:`sample_checksum`, CRC-32: ~20 us for a 10 s clip, a millionth of its tokenize time on
CPU) and compared at read time; a mismatching sample is skipped and counted. Structure: Python's
tarfile reads a damaged member header as the end of the archive, so the reader checks that only
zero blocks follow the last member it read; past a damaged header it reads on (tar headers carry
their own checksum) and the record names the samples lost. Shards written before checksums
existed read as before, unverified (a debug line says so), except that a damaged header makes
the shard unreadable rather than silently short.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa

from accord.core.clip import SAMPLE_SCHEMA, clip_of, sample_row
from accord.core.errors import ERROR_SCHEMA
from accord.core.stages import STAGES
from accord.core.storage import (
    AtomicFile,
    atomic_write_bytes,
    exists,
    join_uri,
    list_names,
    parquet_bytes,
    read_json,
    read_parquet,
    remove,
)
from accord.core.vocab import CODEC_FRAME_RATE, N_CODEBOOKS

log = logging.getLogger(__name__)

SHARD_FORMAT_VERSION = 2  # 2: the json member is the flat clip row (1 nested eligible/features)
SHARDS_DIR, PARTS_DIR, ERRORS_DIR = "shards", "parts", "errors"
INDEX_PARQUET = "index.parquet"
SAMPLES_PARQUET = "samples.parquet"
TOKENIZE_JSON = "tokenize.json"
LDA_NPZ = "lda.npz"
RANDOM_WEIGHTS_KEY = "random_weights"  # in tokenize.json, done markers and index.parquet
CHECKSUM_KEY = "checksum"  # in done markers and index.parquet: f"{CHECKSUM_ALGORITHM}:<hex>"
SAMPLE_CHECKSUMS_KEY = "sample_checksums"  # in done markers: sample key -> sample_checksum
CHECKSUM_ALGORITHM = "crc32"  # of each sample (sample_checksum): a reader must know it to check
# ShardSample field -> its tar member (``<key>.<member>``); the one place the names are spelled
MEMBER_OF: dict[str, str] = {
    "codes": "codes.npy",
    "spk": "spk.npy",
    "spkcrop": "spkcrop.npy",
    "spkaug": "spkaug.npy",
    "meta": "json",
}
MEMBERS: tuple[str, ...] = tuple(MEMBER_OF.values())
CODEC_BYTES_PER_SECOND = N_CODEBOOKS * 2 * CODEC_FRAME_RATE  # int16 codes
TAR_OVERHEAD_PER_MEMBER = 1024  # header + padding (upper bound)


@dataclass
class ShardConfig:
    max_bytes: int = 1_000_000_000  # ~1 GB shards
    max_samples: int = 100_000
    n_augmentations: int = 4  # for the byte estimate
    speaker_dim: int = 192  # for the byte estimate


@dataclass
class ShardSample:
    """One tokenized clip, as the writer takes it and the reader returns it.

    ``meta`` is the clip row (``accord.core.clip.sample_meta``, the ``json`` member; the reader
    returns it in the current shape). The speaker members are optional to the reader (None when
    a shard lacks them); the writer needs all of them.
    """

    codes: np.ndarray  # int16 [9, T]
    spk: np.ndarray | None  # float32 [D]: the whole clip
    spkcrop: np.ndarray | None  # float32 [D]: the speaker crop (meta["speaker_crop"])
    spkaug: np.ndarray | None  # float32 [A, D]: augmented copies (meta["augmentations"])
    meta: dict[str, Any]
    key: str = ""  # the tar key; the clip id when written

    def __post_init__(self) -> None:
        self.key = self.key or str(self.meta["clip_id"])

    @property
    def clip_id(self) -> str:
        return str(self.meta.get("clip_id", self.key))


class ShardError(Exception):
    """A shard that cannot be read in full (truncated tar, bad gzip, missing file, damaged header
    with nothing recorded to read past it, a marker that contradicts its tar)."""


def shards_file(shards_uri: str, name: str) -> str:
    """URI of a top-level file of the layout (``INDEX_PARQUET``, ``TOKENIZE_JSON``, ``LDA_NPZ``...)."""
    return join_uri(shards_uri, name)


def shard_tar_uri(shards_uri: str, shard: str) -> str:
    """``index.parquet`` names shards ``shard-000000``; they live at ``SHARDS/shards/<name>.tar``."""
    return join_uri(shards_uri, SHARDS_DIR, f"{shard}.tar")


# ---------------------------------------------------------------- plan


def shard_name(index: int) -> str:
    return f"shard-{index:06d}"


def estimate_sample_bytes(duration_s: float, cfg: ShardConfig) -> int:
    """Upper estimate of one sample's tar bytes, used to plan shards before encoding."""
    codes = CODEC_BYTES_PER_SECOND * duration_s + 128
    spk = (3 + cfg.n_augmentations) * cfg.speaker_dim * 4 + 3 * 128
    meta = 4096
    return int(codes + spk + meta + len(MEMBERS) * TAR_OVERHEAD_PER_MEMBER)


def plan_shards(clips: list[dict[str, Any]], cfg: ShardConfig) -> list[list[str]]:
    """Clip ids per shard: sorted by id, chunked by estimated bytes and ``max_samples``."""
    plan: list[list[str]] = []
    current: list[str] = []
    size = 0
    for clip in sorted(clips, key=lambda c: c["clip_id"]):
        est = estimate_sample_bytes(float(clip["duration_s"]), cfg)
        if current and (size + est > cfg.max_bytes or len(current) >= cfg.max_samples):
            plan.append(current)
            current, size = [], 0
        current.append(clip["clip_id"])
        size += est
    if current:
        plan.append(current)
    return plan


def plan_digest(clip_ids: list[str]) -> str:
    return hashlib.sha256("\n".join(clip_ids).encode()).hexdigest()


def done_marker_uri(shards_uri: str, index: int | str) -> str:
    """The done marker of shard ``index`` (a number, or a name as ``index.parquet`` spells it)."""
    name = index if isinstance(index, str) else shard_name(index)
    return join_uri(shards_uri, SHARDS_DIR, f"{name}.done")


def is_done(shards_uri: str, index: int, clip_ids: list[str]) -> bool:
    """The shard's tar and marker exist and the marker's clip set equals the plan's."""
    marker = done_marker_uri(shards_uri, index)
    if not exists(marker) or not exists(shard_tar_uri(shards_uri, shard_name(index))):
        return False
    try:
        info = read_json(marker)
    except (ValueError, OSError):
        return False
    return info.get("plan_digest") == plan_digest(clip_ids)


# ---------------------------------------------------------------- encode / decode samples


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def encode_sample(sample: ShardSample) -> dict[str, bytes]:
    """Tar members of one tokenized clip, by member name (see the module docstring)."""
    codes = np.asarray(sample.codes)
    if codes.dtype != np.int16 or codes.ndim != 2:
        raise ValueError(f"codes must be int16 [9, T], got {codes.dtype} {codes.shape}")
    return {
        MEMBER_OF["codes"]: _npy(codes),
        MEMBER_OF["spk"]: _npy(np.asarray(sample.spk, np.float32)),
        MEMBER_OF["spkcrop"]: _npy(np.asarray(sample.spkcrop, np.float32)),
        MEMBER_OF["spkaug"]: _npy(np.asarray(sample.spkaug, np.float32)),
        MEMBER_OF["meta"]: json.dumps(sample.meta, ensure_ascii=False, allow_nan=True).encode(),
    }


def sample_checksum(members: dict[str, bytes]) -> str:
    """CRC-32 of one sample's members (names, lengths and bytes, in name order), 8 hex digits.

    Written into the done marker; the reader recomputes it from the bytes it read, so any
    changed, missing or extra member of the sample shows as a mismatch. CRC-32, not a
    cryptographic hash: it guards against damage, not tampering, and catches every burst of up
    to 32 bits; zlib's runs at ~1 GB/s, 5x BLAKE2b's speed (measured), which the loader pays
    on every read.
    """
    crc = 0
    for name in sorted(members):
        data = members[name]
        crc = zlib.crc32(name.encode() + b"\0" + len(data).to_bytes(8, "little"), crc)
        crc = zlib.crc32(data, crc)
    return f"{crc:08x}"


def shard_checksum(sample_checksums: dict[str, str]) -> str:
    """The shard's checksum: a BLAKE2b-128 of its samples' checksums (in key order), prefixed with
    :data:`CHECKSUM_ALGORITHM` (theirs); the index records it, so a marker that is not the one the
    index was built from is told apart."""
    h = hashlib.blake2b(digest_size=16)
    for key in sorted(sample_checksums):
        h.update(f"{key}={sample_checksums[key]}\n".encode())
    return f"{CHECKSUM_ALGORITHM}:{h.hexdigest()}"


@dataclass(frozen=True)
class ShardRecord:
    """What a shard's done marker records of its tar at write time: what a reader checks it against.

    ``sample_checksums`` is None for shards written before checksums existed (nothing to check).
    """

    name: str
    n_samples: int
    n_bytes: int
    checksum: str | None
    sample_checksums: dict[str, str] | None

    @classmethod
    def from_marker(cls, name: str, info: dict[str, Any]) -> ShardRecord:
        """The record in a marker's contents; a marker that contradicts itself is a :class:`ShardError`."""
        try:
            rec = cls(
                name,
                int(info["n_samples"]),
                int(info["bytes"]),
                info.get(CHECKSUM_KEY),
                info.get(SAMPLE_CHECKSUMS_KEY),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ShardError(
                f"{name}: its done marker is not a shard record ({type(e).__name__}: {e})"
            ) from e
        if (rec.checksum is None) != (rec.sample_checksums is None):
            raise ShardError(f"{name}: its done marker has only one of {CHECKSUM_KEY}/{SAMPLE_CHECKSUMS_KEY}")
        if rec.sample_checksums is not None:
            algorithm = str(rec.checksum).split(":", 1)[0]
            if algorithm != CHECKSUM_ALGORITHM:
                raise ShardError(
                    f"{name}: checksums are {algorithm!r}, this accord checks {CHECKSUM_ALGORITHM!r}; "
                    "upgrade accord to read these shards"
                )
            if (
                len(rec.sample_checksums) != rec.n_samples
                or shard_checksum(rec.sample_checksums) != rec.checksum
            ):
                raise ShardError(f"{name}: its done marker is damaged (its checksums do not add up)")
        return rec

    def mismatch(self, index_row: dict[str, Any]) -> str | None:
        """How this record differs from the shard's ``index.parquet`` row (None: it matches). An
        index without a checksum column (older accord) compares counts and bytes only."""
        for field_, mine in (
            ("n_samples", self.n_samples),
            ("bytes", self.n_bytes),
            (CHECKSUM_KEY, self.checksum),
        ):
            if field_ in index_row and index_row[field_] != mine:
                return f"{field_} {mine!r} in the marker, {index_row[field_]!r} in index.parquet"
        return None


def read_record(shards_uri: str, name: str) -> ShardRecord | None:
    """The record in shard ``name``'s done marker; None when there is no marker (not finished).
    An unreadable or self-contradicting marker is a :class:`ShardError`."""
    uri = done_marker_uri(shards_uri, name)
    if not exists(uri):
        return None
    try:
        info = read_json(uri)
    except (ValueError, OSError) as e:
        raise ShardError(f"{uri}: unreadable done marker: {type(e).__name__}: {e}") from e
    if not isinstance(info, dict):
        raise ShardError(f"{uri}: the done marker holds {type(info).__name__}, expected an object")
    return ShardRecord.from_marker(name, info)


def decode_member(name: str, data: bytes) -> Any:
    if name.endswith(".npy"):
        return np.load(io.BytesIO(data), allow_pickle=False)
    if name == "json" or name.endswith(".json"):
        return json.loads(data)
    return data


def check_clip_id(clip_id: str) -> None:
    """WebDataset splits keys at the first dot of the basename: clip ids must be plain."""
    if not clip_id or any(c in clip_id for c in "./\\") or clip_id.strip() != clip_id:
        raise ValueError(f"clip id {clip_id!r} cannot be a WebDataset key (no '.', '/', '\\\\' or spaces)")


def _add_sample(tar: tarfile.TarFile, sample: ShardSample) -> str:
    """Append one sample's members (fixed mtime/owner, so content alone defines the bytes);
    returns its :func:`sample_checksum`."""
    key = sample.meta["clip_id"]
    check_clip_id(key)
    members = encode_sample(sample)
    for member, data in members.items():
        info = tarfile.TarInfo(f"{key}.{member}")
        info.size = len(data)
        info.mtime = 0
        info.mode = 0o444
        info.uname = info.gname = "accord"
        tar.addfile(info, io.BytesIO(data))
    return sample_checksum(members)


def _tar_members(data: bytes, name: str, read_on: bool) -> tuple[dict[str, dict[str, bytes]], int]:
    """Member payloads by sample key, and the offset where reading stopped. ``read_on``: step
    over damaged headers (block by block, to the next valid one) instead of stopping there."""
    groups: dict[str, dict[str, bytes]] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:", ignore_zeros=read_on) as tar:
            for info in tar:
                if not info.isfile():
                    continue
                key, _, member = PurePosixPath(info.name).name.partition(".")
                f = tar.extractfile(info)
                if f is None:
                    continue
                payload = f.read()
                if len(payload) != info.size:
                    raise ShardError(
                        f"{name}: member {info.name} truncated ({len(payload)} of {info.size} bytes)"
                    )
                groups.setdefault(key, {})[member] = payload
            return groups, tar.offset
    except ShardError:
        raise
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise ShardError(f"{name}: {type(e).__name__}: {e}") from e


def read_tar(
    data: bytes, name: str = "<tar>", record: ShardRecord | None = None
) -> tuple[list[ShardSample], int]:
    """Samples of one WebDataset tar's bytes: ``([ShardSample], n_bad)``.

    Raises :class:`ShardError` when the tar itself is unreadable or truncated (a complete tar
    ends with two zero blocks; one cut at a member boundary would otherwise read as shorter),
    or has a damaged member header (tarfile reads one as the end of the archive; only zero
    blocks may follow the last member) and no ``record`` to read past it with. A sample whose
    members fail to decode, or lack ``codes.npy`` / ``json``, is skipped and counted, never fatal.
    With a ``record`` (the shard's done marker) that has checksums, a sample whose checksum
    differs, one the record lacks and one the record has but the tar no longer yields are each
    skipped and counted too. The ``json`` member (``meta``) is returned in the current shape
    (``clip_of``).
    """
    if len(data) < 1024 or len(data) % 512 or any(data[-1024:]):
        raise ShardError(f"{name}: truncated tar ({len(data)} bytes, no end-of-archive marker)")
    if record is not None and len(data) != record.n_bytes:
        raise ShardError(f"{name}: {len(data)} bytes, its done marker records {record.n_bytes}")
    expected = record.sample_checksums if record is not None else None
    if record is not None and expected is None:
        log.debug("%s: written before shards recorded checksums: read unverified", name)
    try:
        groups, stop = _tar_members(data, name, read_on=False)
        damage = f"{name}: damaged tar header at byte {stop} (the archive reads as ending there)"
        damage = damage if any(data[stop:]) else None
    except ShardError as e:
        if expected is None:
            raise
        damage = str(e)
    if damage is not None:
        if expected is None:
            raise ShardError(f"{damage}; the shard records no checksums to read past it safely")
        log.warning("%s; reading on past it, checking each sample against the done marker", damage)
        groups, _ = _tar_members(data, name, read_on=True)
    samples: list[ShardSample] = []
    bad = 0
    for key, members in groups.items():
        sample = checked_sample(key, members, expected, name)
        if sample is None:
            bad += 1
        else:
            samples.append(sample)
    return samples, bad + count_lost(expected, set(groups), name)


def checked_sample(
    key: str, members: dict[str, bytes], expected: dict[str, str] | None, name: str
) -> ShardSample | None:
    """One sample from its member bytes, checked against the done marker's checksums
    (``expected``; None: unverified); None, logged, when it is bad (one bad sample never stops
    the shard). The one check both :func:`read_tar` and :class:`ShardStream` apply."""
    try:
        if expected is not None:
            if key not in expected:
                raise ValueError("not in the shard's done marker")
            if sample_checksum(members) != expected[key]:
                raise ValueError("checksum mismatch: a changed byte or a lost member since it was written")
        if MEMBER_OF["codes"] not in members or MEMBER_OF["meta"] not in members:
            raise ValueError(f"missing members, have {sorted(members)}")
        values = {f: decode_member(m, members[m]) if m in members else None for f, m in MEMBER_OF.items()}
        if values["codes"].ndim != 2:
            raise ValueError(f"codes.npy has shape {values['codes'].shape}, expected [K, T]")
        values["meta"] = clip_of(values["meta"])
        return ShardSample(**values, key=key)
    except Exception as e:
        log.warning("skipping sample %s in %s: %s", key, name, e)
        return None


def count_lost(expected: dict[str, str] | None, seen: set[str], name: str) -> int:
    """How many samples the record has that the tar no longer yields (lost to tar damage), logged."""
    lost = sorted(set(expected or ()) - seen)
    if lost:
        log.warning(
            "%s: %d of %d samples lost to tar damage: %s%s",
            name, len(lost), len(expected or ()), ", ".join(lost[:5]), " ..." if len(lost) > 5 else "",
        )  # fmt: skip
    return len(lost)


def read_shard(url: str, record: ShardRecord | None = None) -> tuple[list[ShardSample], int]:
    """All samples of the shard tar at ``url`` (local path or any fsspec URL, gzip inferred),
    checked against ``record`` (:func:`read_record`) when given; see :func:`read_tar`. A missing
    or unreadable file is a :class:`ShardError`."""
    import fsspec

    try:
        with fsspec.open(url, "rb", compression="infer") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise ShardError(f"{url}: {type(e).__name__}: {e}") from e
    return read_tar(data, url, record)


class CountingReader(io.RawIOBase):
    """A read-only stream over ``raw`` that counts the bytes read and keeps the last 1024 (a
    complete tar ends with two zero blocks)."""

    def __init__(self, raw: Any) -> None:
        super().__init__()
        self.raw = raw
        self.n_read = 0
        self.tail = b""

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.n_read += len(data)
        self.tail = (self.tail + data)[-1024:]
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


READ_BLOCK_BYTES = 8 * 2**20  # ShardStream's read-ahead from object stores (ranged GETs this big)


class ShardStream:
    """The samples of one shard tar, decoded as its members stream in: memory is one sample's
    members plus the reader's buffer (one ``READ_BLOCK_BYTES`` block), whatever the shard's size
    (local path or any fsspec URL: object stores read it with ranged GETs of that size).

    The checks are :func:`read_tar`'s: with a ``record`` (:func:`read_record`) the size must be
    the recorded one (checked before the first byte, so a truncated shard yields nothing) and
    each sample is checked against its checksum (:func:`checked_sample`); damaged member headers
    are stepped over and the samples lost behind them counted at the end. Without checksums a
    stream must end in the end-of-archive blocks. Unlike :func:`read_tar`, a shard that fails
    mid-stream (changed under the reader, a dropped connection) has already yielded the samples
    before the failure; the :class:`ShardError` comes after them. ``bad`` counts the samples
    skipped so far, ``bytes_read`` the bytes taken from storage.

    ``offset``: start at this byte, which must be a member header (a shard subset: the offset of
    a sample's first member, e.g. from ``tarfile`` ``TarInfo.offset``); the size and lost-sample
    checks then cover only what is read, and stores that support ranged reads read only that.
    """

    def __init__(self, url: str, record: ShardRecord | None = None, offset: int = 0) -> None:
        self.url, self.record, self.offset = url, record, int(offset)
        self.bad = 0
        self.bytes_read = 0

    def __iter__(self) -> Iterator[ShardSample]:
        import fsspec

        expected = self.record.sample_checksums if self.record is not None else None
        if self.record is not None and expected is None:
            log.debug("%s: written before shards recorded checksums: read unverified", self.url)
        try:
            opened = fsspec.open(self.url, "rb", compression="infer")
            if opened.compression is None and self.record is not None:
                size = opened.fs.size(opened.path)
                if size != self.record.n_bytes:
                    raise ShardError(
                        f"{self.url}: {size} bytes, its done marker records {self.record.n_bytes}"
                    )
            # uncompressed: open with a bounded read-ahead block (fsspec's cache holds one; s3fs's
            # default is 50 MiB); a compressed shard keeps fsspec's defaults
            raw = (
                opened
                if opened.compression
                else opened.fs.open(opened.path, "rb", block_size=READ_BLOCK_BYTES)
            )
            with raw as f:
                if self.offset:
                    f.seek(self.offset)
                reader = CountingReader(f)
                try:
                    yield from self._samples(reader, expected)
                finally:
                    self.bytes_read = reader.n_read
        except ShardError:
            raise
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            raise ShardError(f"{self.url}: {type(e).__name__}: {e}") from e

    def _samples(self, reader: CountingReader, expected: dict[str, str] | None) -> Iterator[ShardSample]:
        name = self.url
        seen: set[str] = set()
        key, members = None, {}
        next_offset = 0
        # with checksums, damaged headers are stepped over block by block (ignore_zeros) and
        # the samples behind them counted as lost; without, the archive must end cleanly
        with tarfile.open(fileobj=reader, mode="r|", ignore_zeros=expected is not None) as tar:
            for info in tar:
                if info.offset != next_offset:
                    log.warning(
                        "%s: damaged tar header at byte %d; reading on past it, checking each sample "
                        "against the done marker", name, self.offset + next_offset,
                    )  # fmt: skip
                next_offset = info.offset_data + (info.size + 511) // 512 * 512
                if not info.isfile():
                    continue
                k, _, member = PurePosixPath(info.name).name.partition(".")
                f = tar.extractfile(info)
                payload = f.read() if f is not None else b""
                if len(payload) != info.size:
                    raise ShardError(
                        f"{name}: member {info.name} truncated ({len(payload)} of {info.size} bytes)"
                    )
                if k != key and key is not None:
                    yield from self._flush(key, members, expected, seen)
                    members = {}
                key = k
                members[member] = payload
            if key is not None:
                yield from self._flush(key, members, expected, seen)
        while reader.read(1 << 20):  # the rest: end-of-archive blocks (or damage, checked below)
            pass
        if expected is None and (reader.n_read % 512 or len(reader.tail) < 1024 or any(reader.tail)):
            raise ShardError(
                f"{name}: truncated or damaged tar ({reader.n_read} bytes, no clean end-of-archive)"
            )
        total = self.offset + reader.n_read
        if self.record is not None and total != self.record.n_bytes:
            raise ShardError(f"{name}: {total} bytes, its done marker records {self.record.n_bytes}")
        if not self.offset:
            self.bad += count_lost(expected, seen, name)

    def _flush(
        self, key: str, members: dict[str, bytes], expected: dict[str, str] | None, seen: set[str]
    ) -> Iterator[ShardSample]:
        seen.add(key)
        sample = checked_sample(key, members, expected, self.url)
        if sample is None:
            self.bad += 1
        else:
            yield sample


# ---------------------------------------------------------------- per-sample and per-shard tables


LANGUAGE_TYPE = pa.struct([("language", pa.string()), ("n_samples", pa.int64()), ("hours", pa.float64())])
INDEX_SCHEMA = pa.schema(
    [
        ("shard", pa.string()),
        ("n_samples", pa.int64()),
        ("n_errors", pa.int64()),
        ("bytes", pa.int64()),
        ("seconds", pa.float64()),
        *((f"n_{s}", pa.int64()) for s in STAGES),
        *((f"hours_{s}", pa.float64()) for s in STAGES),
        ("languages", pa.list_(LANGUAGE_TYPE)),
        (RANDOM_WEIGHTS_KEY, pa.list_(pa.string())),
        (CHECKSUM_KEY, pa.string()),
    ]
)


def index_row(shard: str, rows: list[dict[str, Any]], n_errors: int, n_bytes: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "shard": shard,
        "n_samples": len(rows),
        "n_errors": n_errors,
        "bytes": n_bytes,
        "seconds": float(sum(r["duration_s"] for r in rows)),
    }
    for s in STAGES:
        sel = [r for r in rows if r[f"eligible_{s}"]]
        out[f"n_{s}"] = len(sel)
        out[f"hours_{s}"] = sum(r["duration_s"] for r in sel) / 3600.0
    langs: dict[str, list[float]] = {}
    for r in rows:
        langs.setdefault(r["language"], []).append(r["duration_s"])
    out["languages"] = [
        {"language": k, "n_samples": len(v), "hours": sum(v) / 3600.0} for k, v in sorted(langs.items())
    ]
    return out


class ShardWriter:
    """Streams one shard's samples into a temp tar as they arrive; :meth:`close` publishes it.

    Publishing order: tar, per-sample part, errors, then the done marker — a crash at any
    point leaves the shard not-done, and a re-run rewrites it from scratch; a failure in
    :meth:`close` or :meth:`abort` still removes the temp tar. ``random_weights`` (model refs
    loaded with random weights; None = not known) goes into the marker and the index; so does
    the shard's checksum, and the marker holds each sample's (see :class:`ShardRecord`).
    """

    def __init__(
        self, shards_uri: str, index: int, clip_ids: list[str], random_weights: list[str] | None = None
    ) -> None:
        self.shards_uri = shards_uri
        self.index = index
        self.random_weights = None if random_weights is None else sorted(set(random_weights))
        self.name = shard_name(index)
        self.clip_ids = list(clip_ids)
        self.pending = set(clip_ids)
        self.rows: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.checksums: dict[str, str] = {}
        self._file = AtomicFile(shard_tar_uri(shards_uri, self.name))
        try:
            self._tar = tarfile.open(fileobj=self._file.file, mode="w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115
        except BaseException:
            self._file.abort()
            raise

    @property
    def complete(self) -> bool:
        return not self.pending

    def _claim(self, clip_id: str) -> None:
        if clip_id not in self.pending:
            raise ValueError(
                f"{self.name}: clip {clip_id!r} is not pending in this shard (duplicate or foreign)"
            )
        self.pending.discard(clip_id)

    def add(self, sample: ShardSample) -> None:
        self._claim(sample.meta["clip_id"])
        self.checksums[sample.key] = _add_sample(self._tar, sample)
        self.rows.append(sample_row(self.name, sample.meta))

    def add_error(self, clip_id: str, error: dict[str, Any]) -> None:
        self._claim(clip_id)
        self.errors.append(error)

    def close(self) -> dict[str, Any]:
        """Publish the shard; returns its marker's contents. On any failure the shard is aborted."""
        if self.pending:
            raise RuntimeError(f"{self.name}: {len(self.pending)} clips still pending")
        try:
            return self._publish()
        except BaseException:
            self.abort()
            raise

    def _publish(self) -> dict[str, Any]:
        self._tar.close()
        n_bytes = self._file.file.tell()
        self._file.commit()
        rows = sorted(self.rows, key=lambda r: r["clip_id"])
        atomic_write_bytes(
            join_uri(self.shards_uri, PARTS_DIR, f"{self.name}.parquet"),
            parquet_bytes(pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA)),
        )
        err_uri = join_uri(self.shards_uri, ERRORS_DIR, f"{self.name}.parquet")
        if self.errors:
            atomic_write_bytes(err_uri, parquet_bytes(pa.Table.from_pylist(self.errors, schema=ERROR_SCHEMA)))
        else:
            remove(err_uri)
        info = index_row(self.name, rows, len(self.errors), n_bytes)
        info[RANDOM_WEIGHTS_KEY] = self.random_weights
        info[CHECKSUM_KEY] = shard_checksum(self.checksums)
        info[SAMPLE_CHECKSUMS_KEY] = dict(sorted(self.checksums.items()))
        info["plan_digest"] = plan_digest(self.clip_ids)
        atomic_write_bytes(done_marker_uri(self.shards_uri, self.index), json.dumps(info).encode())
        return info

    def abort(self) -> None:
        """Drop the temp tar; its removal does not depend on the tar closing (a full disk fails
        the close)."""
        try:
            self._tar.close()
        except Exception as e:  # the tar is discarded: its end blocks do not matter
            log.debug("%s: closing the aborted tar failed: %s", self.name, e)
        finally:
            self._file.abort()


def write_shard(
    shards_uri: str,
    index: int,
    clip_ids: list[str],
    samples: list[ShardSample],
    errors: dict[str, dict[str, Any]] | None = None,
    random_weights: list[str] | None = None,
) -> dict[str, Any]:
    """Write one whole shard at once (``errors``: clip_id -> ERROR_SCHEMA row)."""
    w = ShardWriter(shards_uri, index, clip_ids, random_weights)
    try:
        for sample in sorted(samples, key=lambda s: s.meta["clip_id"]):
            w.add(sample)
        for clip_id, err in (errors or {}).items():
            w.add_error(clip_id, err)
        return w.close()
    except BaseException:
        w.abort()
        raise


def write_index(shards_uri: str, n_shards: int) -> tuple[pa.Table, pa.Table]:
    """Rebuild ``index.parquet`` and ``samples.parquet`` from the done shards ``0..n_shards-1``."""
    index_rows, parts = [], []
    for i in range(n_shards):
        marker = done_marker_uri(shards_uri, i)
        if not exists(marker):
            continue
        info = read_json(marker)
        # markers of older shards lack random_weights and checksum: null, "not recorded"
        index_rows.append(
            {
                k: info.get(k) if k in (RANDOM_WEIGHTS_KEY, CHECKSUM_KEY) else info[k]
                for k in INDEX_SCHEMA.names
            }
        )
        parts.append(
            upgrade_samples(read_parquet(join_uri(shards_uri, PARTS_DIR, f"{shard_name(i)}.parquet")))
        )
    index = pa.Table.from_pylist(index_rows, schema=INDEX_SCHEMA)
    samples = pa.concat_tables(parts) if parts else SAMPLE_SCHEMA.empty_table()
    atomic_write_bytes(shards_file(shards_uri, INDEX_PARQUET), parquet_bytes(index))
    atomic_write_bytes(shards_file(shards_uri, SAMPLES_PARQUET), parquet_bytes(samples))
    return index, samples


def remove_stale(shards_uri: str, n_shards: int) -> list[str]:
    """Delete shards numbered ``>= n_shards`` (left by an earlier, larger plan); returns their names.

    The done marker goes first, so an interrupted clean-up leaves not-done shards, never
    half-deleted done ones.
    """
    stale = set()
    for entry in list_names(join_uri(shards_uri, SHARDS_DIR)):
        name = entry.split(".", 1)[0]
        if name.startswith("shard-") and name[6:].isdigit() and int(name[6:]) >= n_shards:
            stale.add(name)
    for name in sorted(stale):
        remove(done_marker_uri(shards_uri, int(name[6:])))
        remove(shard_tar_uri(shards_uri, name))
        remove(join_uri(shards_uri, PARTS_DIR, f"{name}.parquet"))
        remove(join_uri(shards_uri, ERRORS_DIR, f"{name}.parquet"))
    return sorted(stale)


# ---------------------------------------------------------------- readers


def upgrade_samples(table: pa.Table) -> pa.Table:
    """``samples.parquet`` rows in the current schema (format 1 named ``duration_s`` ``seconds``)."""
    if "seconds" in table.column_names and "duration_s" not in table.column_names:
        table = table.rename_columns(["duration_s" if c == "seconds" else c for c in table.column_names])
    return table


def read_samples(shards_uri: str, columns: list[str] | None = None) -> pa.Table:
    """``samples.parquet``: one row per sample (``SAMPLE_SCHEMA`` names, whatever format wrote it)."""
    table = upgrade_samples(read_parquet(shards_file(shards_uri, SAMPLES_PARQUET)))
    return table.select(columns) if columns is not None else table


def read_index(shards_uri: str) -> pa.Table | None:
    """``index.parquet`` (one row per finished shard), or None before the first index is written."""
    uri = shards_file(shards_uri, INDEX_PARQUET)
    return read_parquet(uri) if exists(uri) else None


def shard_names(shards_uri: str) -> list[str]:
    """Finished shards: those ``index.parquet`` lists, else every tar with a done marker."""
    index = read_index(shards_uri)
    if index is not None:
        return index["shard"].to_pylist()
    entries = set(list_names(join_uri(shards_uri, SHARDS_DIR)))
    return [e[:-4] for e in sorted(entries) if e.endswith(".tar") and f"{e[:-4]}.done" in entries]


def iter_samples(shards_uri: str) -> Iterator[ShardSample]:
    """Every sample of every finished shard, in shard then clip-id order (checked against its
    done marker when it has one)."""
    for name in shard_names(shards_uri):
        samples, _ = read_shard(shard_tar_uri(shards_uri, name), read_record(shards_uri, name))
        yield from samples


def read_sample(shards_uri: str, clip_id: str) -> ShardSample:
    """One sample by clip id (looked up in ``samples.parquet``, then read from its shard)."""
    names = None
    if exists(shards_file(shards_uri, SAMPLES_PARQUET)):
        t = read_samples(shards_uri, columns=["clip_id", "shard"])
        names = [
            s for c, s in zip(t["clip_id"].to_pylist(), t["shard"].to_pylist(), strict=True) if c == clip_id
        ]
    for name in names if names is not None else shard_names(shards_uri):
        samples, _ = read_shard(shard_tar_uri(shards_uri, name), read_record(shards_uri, name))
        for sample in samples:
            if sample.key == clip_id:
                return sample
    raise KeyError(f"clip {clip_id!r} is not in {shards_uri}")


# ---------------------------------------------------------------- tokenize.json


def write_tokenize_json(shards_uri: str, meta: dict[str, Any]) -> None:
    """The run's models and settings, stamped with ``SHARD_FORMAT_VERSION``."""
    atomic_write_bytes(
        shards_file(shards_uri, TOKENIZE_JSON),
        json.dumps({**meta, "shard_format": SHARD_FORMAT_VERSION}, indent=2).encode(),
    )


def read_tokenize_json(shards_uri: str) -> dict[str, Any] | None:
    """``SHARDS/tokenize.json``, or None when the shards have none (written before it existed,
    or by hand); an unreadable file is an error, never silently "no metadata"."""
    uri = shards_file(shards_uri, TOKENIZE_JSON)
    if not exists(uri):
        return None
    try:
        info = read_json(uri)
    except ValueError as e:
        raise ValueError(f"{uri} is not valid JSON: {e}") from e
    if not isinstance(info, dict):
        raise ValueError(f"{uri} holds {type(info).__name__}, expected an object")
    return info


def tokenize_refs(shards_uri: str) -> dict[str, Any]:
    """What ``tokenize.json`` records of its models, so an eval and a checkpoint match the data:
    ``codec`` and ``speaker`` refs, and ``random_weights`` (refs loaded with seeded random
    weights); keys are absent when the shards do not say."""
    info = read_tokenize_json(shards_uri) or {}
    refs: dict[str, Any] = {}
    codec = info.get("codec") or {}
    speaker = info.get("speaker") or {}
    if isinstance(codec, dict) and codec.get("ref"):
        refs["codec"] = codec["ref"]
    if isinstance(speaker, dict) and speaker.get("ref"):
        refs["speaker"] = speaker["ref"]
    random = info.get(RANDOM_WEIGHTS_KEY)
    if random is None and isinstance(codec, dict) and codec.get("random_weights") and codec.get("ref"):
        random = [codec["ref"]]  # written before the list existed: the flag sat on the codec
    if random is not None:
        refs[RANDOM_WEIGHTS_KEY] = sorted(random)
    return refs
