"""ShardStream: the streaming reader yields what read_shard reads, with the same checks."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from accord.core.shards import ShardError, ShardStream, read_record, read_shard, shard_tar_uri
from accord.train.synthetic import write_synthetic_shards

NAME = "shard-000001"


def _both(url: str, record) -> tuple[list[str], int, list[str], int]:
    samples, bad = read_shard(url, record)
    stream = ShardStream(url, record)
    streamed = list(stream)
    return [s.key for s in samples], bad, [s.key for s in streamed], stream.bad


def test_stream_matches_read_shard_clean_damaged_and_truncated(tmp_path: Path) -> None:
    root = write_synthetic_shards(tmp_path / "s", n_clips=16, n_shards=2)
    url, record = shard_tar_uri(str(root), NAME), read_record(str(root), NAME)
    tar = Path(url)
    keys, bad, streamed, sbad = _both(url, record)
    assert streamed == keys and bad == sbad == 0
    stream = ShardStream(url, record)
    assert [s.codes.tolist() for s in stream] == [s.codes.tolist() for s in read_shard(url, record)[0]]
    assert stream.bytes_read == record.n_bytes
    # a subset from a member's offset (a ranged read where the store supports it)
    with tarfile.open(tar) as t:
        at = t.getmember(f"{keys[3]}.codes.npy").offset
        header = t.getmember(f"{keys[2]}.json").offset
    assert [s.key for s in ShardStream(url, record, offset=at)] == keys[3:]
    # a damaged member header mid-tar, then a changed code byte: read past, each sample counted
    data = bytearray(tar.read_bytes())
    data[header + 60] ^= 0x5A
    with tarfile.open(fileobj=io.BytesIO(bytes(data)), ignore_zeros=True) as t:
        data[t.getmember(f"{keys[5]}.codes.npy").offset_data + 200] ^= 0x5A
    tar.write_bytes(bytes(data))
    keys2, bad, streamed, sbad = _both(url, record)
    assert streamed == keys2 and bad == sbad == 2 and keys[2] not in streamed and keys[5] not in streamed
    # truncated: with a record nothing is yielded (the size is checked first); without, an error
    tar.write_bytes(tar.read_bytes()[:5000])
    stream = ShardStream(url, record)
    with pytest.raises(ShardError, match="done marker records"):
        next(iter(stream))
    with pytest.raises(ShardError, match="truncated"):
        list(ShardStream(url))
