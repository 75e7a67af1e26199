"""The tokenize sink on a full disk: no write path leaves a temp tar behind."""

from __future__ import annotations

import errno
import io
from pathlib import Path

import numpy as np
import pytest

import accord.core.shards as shards
from accord.core.storage import AtomicFile
from accord.tokenize.sink import ShardSink
from accord.train.synthetic import clip_sample


class _Disk(io.RawIOBase):
    """A file on a disk with ``free`` bytes left: writes past them fail as a full disk does."""

    def __init__(self, path: str, free: int) -> None:
        self.f, self.free = open(path, "wb", buffering=0), free  # noqa: SIM115 - closed in close

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.f.tell()

    def write(self, b) -> int:
        if len(b) > self.free:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.free -= len(b)
        return self.f.write(b)

    def close(self) -> None:
        self.f.close()
        super().close()


def _sink(root: Path, free: int, monkeypatch) -> ShardSink:
    class SmallDisk(AtomicFile):
        def __init__(self, target: str) -> None:
            super().__init__(target)
            self.file.close()
            self.file = io.BufferedWriter(_Disk(self.tmp, free))

    monkeypatch.setattr(shards, "AtomicFile", SmallDisk)  # only the shard tars: markers write
    return ShardSink(str(root), {"shard-000000": (0, ["clip0000", "clip0001"])}, [], "run")


def _item(i: int) -> dict:
    return {
        "clip_id": f"clip{i:04d}",
        "sample": clip_sample(i, np.random.default_rng(i), 400),
        "random_weights": [],
    }


@pytest.mark.parametrize("fills_on", ["add", "close"])
def test_a_full_disk_leaves_no_temp_tar(tmp_path: Path, monkeypatch, fills_on: str) -> None:
    """The disk fills while a sample streams in (the run fails and aborts the sink), or as the
    shard is published (the tar's end blocks, the final flush): either way no temp file stays and
    nothing is published."""
    items = [_item(0), _item(1)]
    whole = shards.write_shard(
        str(tmp_path / "clean"), 0, ["clip0000", "clip0001"], [i["sample"] for i in items]
    )
    free = 0 if fills_on == "add" else whole["bytes"] - 1  # every member fits, the tar's end does not
    sink = _sink(tmp_path / "out", free, monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        for item in items:
            sink.item("shard-000000", item)
        sink.complete("shard-000000", {})
    sink.abort()  # what the job does on any failure; closing the tar fails again here
    assert list((tmp_path / "out" / "shards").iterdir()) == [], "no temp tar, no tar, no marker"
