"""WebDataset shards of tokenized clips, their Parquet index, and atomic, resumable writes.

Layout under ``SHARDS_URI``::

    shards/shard-000000.tar     WebDataset tar; sample key = clip_id; members codes.npy,
                                spk.npy, spkcrop.npy, spkaug.npy, json
    shards/shard-000000.done    JSON marker written last: the shard is complete
    parts/shard-000000.parquet  per-sample rows of that shard (→ samples.parquet)
    errors/shard-000000.parquet ERROR_SCHEMA rows of clips that failed in that shard
    index.parquet               one row per shard: counts and hours per stage and language, and
                                ``random_weights``: the model refs its codes/embeddings came from
                                with random weights (sorted; [] = all trained; null = not recorded)
    samples.parquet             one row per sample: what the trainer filters and samples from
    tokenize.json               the run's models and settings (written by accord.tokenize.job),
                                with the same ``random_weights`` list

Clips are assigned to shards deterministically (sorted by clip id, chunked by estimated bytes
and a sample cap), so a re-run recomputes the same plan and skips every shard whose tar and
done marker exist and whose marker records the same clip set.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from accord.schema import ERROR_SCHEMA, FEATURE_FIELDS
from accord.stages import STAGES

RANDOM_WEIGHTS_KEY = "random_weights"  # in tokenize.json, done markers and index.parquet
MEMBERS: tuple[str, ...] = ("codes.npy", "spk.npy", "spkcrop.npy", "spkaug.npy", "json")
CODEC_BYTES_PER_SECOND = 9 * 2 * 44100 / 512  # int16 codes
TAR_OVERHEAD_PER_MEMBER = 1024  # header + padding (upper bound)


@dataclass
class ShardConfig:
    max_bytes: int = 1_000_000_000  # ~1 GB shards
    max_samples: int = 100_000
    n_augmentations: int = 4  # for the byte estimate
    speaker_dim: int = 192  # for the byte estimate


# ---------------------------------------------------------------- file system helpers


def _fs(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, path = fsspec.core.url_to_fs(uri)
    return fs, path


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


class AtomicFile:
    """A binary file that appears at ``uri`` only on :meth:`commit` (temp file + rename/put)."""

    def __init__(self, uri: str) -> None:
        self.fs, self.path = _fs(uri)
        if _is_local(self.fs):
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            self.tmp = f"{self.path}.{uuid.uuid4().hex}.tmp"
        else:
            self.tmp = os.path.join(tempfile.gettempdir(), f"accord-{uuid.uuid4().hex}.tmp")
        self.file = open(self.tmp, "wb")  # noqa: SIM115 - closed in commit/abort

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        try:
            if _is_local(self.fs):
                os.replace(self.tmp, self.path)
            else:
                self.fs.put_file(self.tmp, self.path)  # object writes are atomic
        finally:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)

    def abort(self) -> None:
        self.file.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


def atomic_write_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` so readers see the old file or the whole new one, never a part."""
    f = AtomicFile(uri)
    try:
        f.file.write(data)
    except BaseException:
        f.abort()
        raise
    f.commit()


def _exists(uri: str) -> bool:
    fs, path = _fs(uri)
    return fs.exists(path)


def _read_bytes(uri: str) -> bytes:
    fs, path = _fs(uri)
    return fs.cat_file(path)


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


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


def done_marker_uri(shards_uri: str, index: int) -> str:
    return _join(shards_uri, "shards", f"{shard_name(index)}.done")


def is_done(shards_uri: str, index: int, clip_ids: list[str]) -> bool:
    """The shard's tar and marker exist and the marker's clip set equals the plan's."""
    marker = done_marker_uri(shards_uri, index)
    if not _exists(marker) or not _exists(_join(shards_uri, "shards", f"{shard_name(index)}.tar")):
        return False
    try:
        info = json.loads(_read_bytes(marker))
    except (ValueError, OSError):
        return False
    return info.get("plan_digest") == plan_digest(clip_ids)


# ---------------------------------------------------------------- encode / decode samples


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def encode_sample(sample: dict[str, Any]) -> dict[str, bytes]:
    """Tar members of one tokenized clip (see the module docstring)."""
    codes = np.asarray(sample["codes"])
    if codes.dtype != np.int16 or codes.ndim != 2:
        raise ValueError(f"codes must be int16 [9, T], got {codes.dtype} {codes.shape}")
    return {
        "codes.npy": _npy(codes),
        "spk.npy": _npy(np.asarray(sample["spk"], np.float32)),
        "spkcrop.npy": _npy(np.asarray(sample["spkcrop"], np.float32)),
        "spkaug.npy": _npy(np.asarray(sample["spkaug"], np.float32)),
        "json": json.dumps(sample["json"], ensure_ascii=False, allow_nan=True).encode(),
    }


def decode_member(name: str, data: bytes) -> Any:
    if name.endswith(".npy"):
        return np.load(io.BytesIO(data), allow_pickle=False)
    if name == "json" or name.endswith(".json"):
        return json.loads(data)
    return data


def check_key(clip_id: str) -> None:
    """WebDataset splits keys at the first dot of the basename: clip ids must be plain."""
    if not clip_id or any(c in clip_id for c in "./\\") or clip_id.strip() != clip_id:
        raise ValueError(f"clip id {clip_id!r} cannot be a WebDataset key (no '.', '/', '\\\\' or spaces)")


def _add_sample(tar: tarfile.TarFile, sample: dict[str, Any]) -> int:
    """Append one sample's members (fixed mtime/owner, so content alone defines the bytes)."""
    key = sample["json"]["clip_id"]
    check_key(key)
    n = 0
    for member, data in encode_sample(sample).items():
        info = tarfile.TarInfo(f"{key}.{member}")
        info.size = len(data)
        info.mtime = 0
        info.mode = 0o444
        info.uname = info.gname = "accord"
        tar.addfile(info, io.BytesIO(data))
        n += len(data)
    return n


def tar_bytes(samples: list[dict[str, Any]]) -> bytes:
    """A WebDataset tar of ``samples`` in memory (tests, small writes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for sample in samples:
            _add_sample(tar, sample)
    return buf.getvalue()


def iter_tar(data: bytes) -> Iterator[dict[str, Any]]:
    """Samples of a WebDataset tar: ``{"__key__": clip_id, member: decoded value, ...}``."""
    current: dict[str, Any] | None = None
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        for info in tar:
            if not info.isfile():
                continue
            key, _, member = info.name.rpartition("/")[2].partition(".")
            f = tar.extractfile(info)
            assert f is not None
            value = decode_member(member, f.read())
            if current is None or current["__key__"] != key:
                if current is not None:
                    yield current
                current = {"__key__": key}
            current[member] = value
    if current is not None:
        yield current


# ---------------------------------------------------------------- per-sample and per-shard tables


def _sample_schema() -> pa.Schema:
    return pa.schema(
        [
            ("clip_id", pa.string()),
            ("shard", pa.string()),
            *((f"eligible_{s}", pa.bool_()) for s in STAGES),
            ("language", pa.string()),
            ("seconds", pa.float64()),
            ("n_frames", pa.int32()),
            ("agreement", pa.float32()),
            *FEATURE_FIELDS,
            ("source_uri", pa.string()),
        ]
    )


SAMPLE_SCHEMA = _sample_schema()

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
    ]
)


def sample_row(shard: str, meta: dict[str, Any]) -> dict[str, Any]:
    feats = meta.get("features", {})
    row = {
        "clip_id": meta["clip_id"],
        "shard": shard,
        "language": meta.get("language") or "",
        "seconds": float(meta["duration_s"]),
        "n_frames": int(meta["n_frames"]),
        "agreement": meta.get("agreement"),
        "source_uri": meta.get("source_uri"),
    }
    for s in STAGES:
        row[f"eligible_{s}"] = bool(meta.get("eligible", {}).get(s, False))
    for name, _ in FEATURE_FIELDS:
        row[name] = feats.get(name)
    return row


def index_row(shard: str, rows: list[dict[str, Any]], n_errors: int, n_bytes: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "shard": shard,
        "n_samples": len(rows),
        "n_errors": n_errors,
        "bytes": n_bytes,
        "seconds": float(sum(r["seconds"] for r in rows)),
    }
    for s in STAGES:
        sel = [r for r in rows if r[f"eligible_{s}"]]
        out[f"n_{s}"] = len(sel)
        out[f"hours_{s}"] = sum(r["seconds"] for r in sel) / 3600.0
    langs: dict[str, list[float]] = {}
    for r in rows:
        langs.setdefault(r["language"], []).append(r["seconds"])
    out["languages"] = [
        {"language": k, "n_samples": len(v), "hours": sum(v) / 3600.0} for k, v in sorted(langs.items())
    ]
    return out


class ShardWriter:
    """Streams one shard's samples into a temp tar as they arrive; :meth:`close` publishes it.

    Publishing order: tar, per-sample part, errors, then the done marker — a crash at any
    point leaves the shard not-done, and a re-run rewrites it from scratch. ``random_weights``
    (model refs loaded with random weights; None = not known) goes into the marker and the index.
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
        self._file = AtomicFile(_join(shards_uri, "shards", f"{self.name}.tar"))
        self._tar = tarfile.open(fileobj=self._file.file, mode="w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115

    @property
    def complete(self) -> bool:
        return not self.pending

    def _claim(self, clip_id: str) -> None:
        if clip_id not in self.pending:
            raise ValueError(
                f"{self.name}: clip {clip_id!r} is not pending in this shard (duplicate or foreign)"
            )
        self.pending.discard(clip_id)

    def add(self, sample: dict[str, Any]) -> None:
        self._claim(sample["json"]["clip_id"])
        _add_sample(self._tar, sample)
        self.rows.append(sample_row(self.name, sample["json"]))

    def add_error(self, clip_id: str, error: dict[str, Any]) -> None:
        self._claim(clip_id)
        self.errors.append(error)

    def close(self) -> dict[str, Any]:
        if self.pending:
            raise RuntimeError(f"{self.name}: {len(self.pending)} clips still pending")
        self._tar.close()
        n_bytes = self._file.file.tell()
        self._file.commit()
        rows = sorted(self.rows, key=lambda r: r["clip_id"])
        atomic_write_bytes(
            _join(self.shards_uri, "parts", f"{self.name}.parquet"),
            _parquet_bytes(pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA)),
        )
        err_uri = _join(self.shards_uri, "errors", f"{self.name}.parquet")
        if self.errors:
            atomic_write_bytes(
                err_uri, _parquet_bytes(pa.Table.from_pylist(self.errors, schema=ERROR_SCHEMA))
            )
        elif _exists(err_uri):
            fs, path = _fs(err_uri)
            fs.rm(path)
        info = index_row(self.name, rows, len(self.errors), n_bytes)
        info[RANDOM_WEIGHTS_KEY] = self.random_weights
        info["plan_digest"] = plan_digest(self.clip_ids)
        atomic_write_bytes(done_marker_uri(self.shards_uri, self.index), json.dumps(info).encode())
        return info

    def abort(self) -> None:
        self._tar.close()
        self._file.abort()


def write_shard(
    shards_uri: str,
    index: int,
    clip_ids: list[str],
    samples: list[dict[str, Any]],
    errors: dict[str, dict[str, Any]] | None = None,
    random_weights: list[str] | None = None,
) -> dict[str, Any]:
    """Write one whole shard at once (``errors``: clip_id -> ERROR_SCHEMA row)."""
    w = ShardWriter(shards_uri, index, clip_ids, random_weights)
    try:
        for sample in sorted(samples, key=lambda s: s["json"]["clip_id"]):
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
        if not _exists(marker):
            continue
        info = json.loads(_read_bytes(marker))
        # markers of older shards lack random_weights: null, "not recorded", never "none"
        index_rows.append(
            {k: info.get(k) if k == RANDOM_WEIGHTS_KEY else info[k] for k in INDEX_SCHEMA.names}
        )
        parts.append(
            pq.read_table(io.BytesIO(_read_bytes(_join(shards_uri, "parts", f"{shard_name(i)}.parquet"))))
        )
    index = pa.Table.from_pylist(index_rows, schema=INDEX_SCHEMA)
    samples = pa.concat_tables(parts) if parts else SAMPLE_SCHEMA.empty_table()
    atomic_write_bytes(_join(shards_uri, "index.parquet"), _parquet_bytes(index))
    atomic_write_bytes(_join(shards_uri, "samples.parquet"), _parquet_bytes(samples))
    return index, samples


# ---------------------------------------------------------------- readers


def shard_uris(shards_uri: str) -> list[str]:
    """Finished shards: those ``index.parquet`` lists, else every tar with a done marker."""
    index_uri = _join(shards_uri, "index.parquet")
    if _exists(index_uri):
        names = pq.read_table(io.BytesIO(_read_bytes(index_uri)), columns=["shard"])["shard"].to_pylist()
        return [_join(shards_uri, "shards", f"{n}.tar") for n in names]
    fs, path = _fs(_join(shards_uri, "shards"))
    if not fs.exists(path):
        return []
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False) if p.endswith(".tar"))
    return [
        _join(shards_uri, "shards", n)
        for n in names
        if _exists(_join(shards_uri, "shards", n[:-4] + ".done"))
    ]


def remove_stale(shards_uri: str, n_shards: int) -> list[str]:
    """Delete shards numbered ``>= n_shards`` (left by an earlier, larger plan); returns their names.

    The done marker goes first, so an interrupted clean-up leaves not-done shards, never
    half-deleted done ones.
    """
    fs, path = _fs(_join(shards_uri, "shards"))
    if not fs.exists(path):
        return []
    stale = set()
    for p in fs.ls(path, detail=False):
        name = p.rsplit("/", 1)[-1].split(".", 1)[0]
        if name.startswith("shard-") and name[6:].isdigit() and int(name[6:]) >= n_shards:
            stale.add(name)
    for name in sorted(stale):
        for rel in (
            f"shards/{name}.done",
            f"shards/{name}.tar",
            f"parts/{name}.parquet",
            f"errors/{name}.parquet",
        ):
            uri = _join(shards_uri, rel)
            if _exists(uri):
                rfs, rpath = _fs(uri)
                rfs.rm(rpath)
    return sorted(stale)


def read_random_weights(shards_uri: str) -> list[str] | None:
    """Model refs whose random weights made (some of) these shards, sorted; ``[]`` when every model
    was trained; ``None`` when neither ``tokenize.json`` nor the index records it.

    The union of what ``tokenize.json`` and every index row say, so one random shard is enough
    to report the refs: what a checkpoint trained on these shards should carry in its params.
    """
    found: set[str] | None = None
    meta_uri = _join(shards_uri, "tokenize.json")
    if _exists(meta_uri):
        recorded = json.loads(_read_bytes(meta_uri)).get(RANDOM_WEIGHTS_KEY)
        if recorded is not None:
            found = set(recorded)
    index_uri = _join(shards_uri, "index.parquet")
    if _exists(index_uri):
        index = pq.read_table(io.BytesIO(_read_bytes(index_uri)))
        if RANDOM_WEIGHTS_KEY in index.column_names:
            for refs in index[RANDOM_WEIGHTS_KEY].to_pylist():
                if refs is not None:
                    found = (found or set()) | set(refs)
    return None if found is None else sorted(found)


def iter_samples(shards_uri: str) -> Iterator[dict[str, Any]]:
    """Every sample of every finished shard, in shard then clip-id order."""
    for uri in shard_uris(shards_uri):
        yield from iter_tar(_read_bytes(uri))


def read_sample(shards_uri: str, clip_id: str) -> dict[str, Any]:
    """One sample by clip id (looked up in ``samples.parquet``, then read from its shard)."""
    samples_uri = _join(shards_uri, "samples.parquet")
    shards = None
    if _exists(samples_uri):
        t = pq.read_table(io.BytesIO(_read_bytes(samples_uri)), columns=["clip_id", "shard"])
        hits = [
            s for c, s in zip(t["clip_id"].to_pylist(), t["shard"].to_pylist(), strict=True) if c == clip_id
        ]
        shards = [_join(shards_uri, "shards", f"{h}.tar") for h in hits]
    for uri in shards if shards is not None else shard_uris(shards_uri):
        for sample in iter_tar(_read_bytes(uri)):
            if sample["__key__"] == clip_id:
                return sample
    raise KeyError(f"clip {clip_id!r} is not in {shards_uri}")
