"""A first run holding an output, in its own process: for tests of two runs on one output."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Holds OUT (argv[1]) and is mid-way through writing a manifest part; prints that part's temp file.
HOLDER = """
import sys, time
from accord.core.lock import OutputLock
from accord.core.storage import AtomicFile
OutputLock(sys.argv[1], "ingest").acquire("run-first")
f = AtomicFile(sys.argv[1] + "/manifest/part-a.parquet")
f.file.write(b"in progress")
f.file.flush()
print(f.tmp, flush=True)
time.sleep(600)
"""


@contextmanager
def first_run_holding(out: Path) -> Iterator[tuple[subprocess.Popen, Path]]:
    """``(process, its in-progress temp file)`` while a first ingest run holds ``out``; killed
    (its lock left behind, as a crash leaves it) on exit."""
    first = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None
        tmp = Path(first.stdout.readline().strip())
        assert tmp.exists(), "the first run did not start"
        yield first, tmp
    finally:
        first.kill()
        first.wait()
