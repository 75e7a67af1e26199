"""Content-addressed, atomic build cache for generated sample corpora.

A corpus lives in ``$ACCORD_CACHE/samples/<kind>-<hash>`` where the hash covers the
parameters and the generator version. It is built in a temporary sibling directory and
renamed into place, so concurrent test sessions never see a half-written corpus: the first
rename wins and the others reuse it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

PARAMS_FILE = "params.json"


def cache_root() -> Path:
    """``$ACCORD_CACHE/samples`` (default ``~/.cache/accord/samples``)."""
    base = os.environ.get("ACCORD_CACHE") or Path.home() / ".cache" / "accord"
    return Path(base) / "samples"


def params_hash(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


def _is_complete(d: Path, params: dict[str, Any]) -> bool:
    p = d / PARAMS_FILE
    return p.is_file() and json.loads(p.read_text()) == params


def build_once(
    kind: str, params: dict[str, Any], build: Callable[[Path], None], out_dir: str | Path | None = None
) -> Path:
    """Return a directory holding the corpus for ``params``, building it with ``build(tmp_dir)`` if needed.

    ``params.json`` is written last, so a directory that has it is complete.
    """
    final = Path(out_dir) if out_dir is not None else cache_root() / f"{kind}-{params_hash(params)}"
    if final.exists():
        if _is_complete(final, params):
            return final
        if any(final.iterdir()):
            raise FileExistsError(f"{final} exists and is not a {kind} corpus with these parameters")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the corpus is shared data
        build(tmp)
        (tmp / PARAMS_FILE).write_text(json.dumps(params, indent=1, sort_keys=True))
        if final.exists() and not any(final.iterdir()):
            final.rmdir()
        try:
            os.rename(tmp, final)
        except OSError:
            if not _is_complete(final, params):  # lost a race to a broken writer: surface it
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
