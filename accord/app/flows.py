"""Runs that compose jobs: ingest a raw bucket, then tokenize the clips it kept.

The CLI only parses and prints; the order of the jobs, and the check that makes a chained run
fail before its hours of ingest rather than after, live here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from accord.core.storage import redact_uri
from accord.pipeline.job.config import IngestConfig
from accord.pipeline.job.runner import IngestResult, run_ingest

if TYPE_CHECKING:
    from accord.tokenize.config import TokenizeConfig
    from accord.tokenize.job import TokenizeResult

log = logging.getLogger(__name__)


@dataclass
class IngestTokenizeResult:
    ingest: IngestResult
    tokenize: TokenizeResult | None = None  # None: no shards asked for, or the ingest did not succeed

    @property
    def ok(self) -> bool:
        return self.ingest.ok


def tokenize_manifest(
    manifest_uri: str, shards_uri: str, cfg: TokenizeConfig, address: str | None = None
) -> TokenizeResult:
    """Tokenize the clips of ``manifest_uri`` that ``cfg`` selects into ``shards_uri``."""
    from accord.tokenize.job import run_tokenize

    return run_tokenize(manifest_uri, shards_uri, config=cfg, address=address)


def ingest_then_tokenize(
    raw_uri: str,
    out_uri: str,
    shards_uri: str | None = None,
    ingest: IngestConfig | None = None,
    tokenize: TokenizeConfig | None = None,
    *,
    list_file: str | None = None,
    argv: list[str] | None = None,
    on_commit: Callable[[Any, int, int], None] | None = None,
    on_ingest: Callable[[IngestResult], None] | None = None,
) -> IngestTokenizeResult:
    """Ingest ``raw_uri`` into ``out_uri``; then, if ``shards_uri`` is given and the ingest
    succeeded, tokenize its manifest into ``shards_uri`` with ``tokenize``.

    The tokenize models' weights are resolved first, so a tokenize that would refuse them
    (:class:`accord.core.weights.ModelNotFound`, with the how-to) fails before any ingest work.
    ``on_commit`` is called per committed source, ``on_ingest`` once the ingest has ended.
    """
    tok_cfg = None
    if shards_uri:
        from accord.tokenize.config import TokenizeConfig
        from accord.tokenize.job import check_weights

        tok_cfg = tokenize or TokenizeConfig()
        check_weights(tok_cfg)
    result = run_ingest(raw_uri, out_uri, ingest, list_file=list_file, argv=argv, on_commit=on_commit)
    if on_ingest is not None:
        on_ingest(result)
    if tok_cfg is None or not result.ok:
        return IngestTokenizeResult(result)
    log.info("ingest %s done; tokenizing it into %s", result.run_id, redact_uri(shards_uri))
    return IngestTokenizeResult(result, tokenize_manifest(out_uri, shards_uri, tok_cfg))
