"""Serve the explorer on localhost: load the catalog, build the app, run uvicorn until Ctrl-C."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from accord.core.eligibility import load_thresholds
from accord.core.errors import UserError
from accord.explore.app import create_app
from accord.explore.catalog import Catalog

log = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"


def stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class BindError(UserError):
    """The port is taken or the address cannot be bound."""


def serve(
    out_uri: str,
    host: str = LOCALHOST,
    port: int = 8765,
    thresholds: Any = None,
    memory_limit: str = "1GB",
    on_ready: Callable[[str], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Explore ``out_uri`` at ``http://host:port/`` (read-only; blocks until interrupted).
    ``thresholds``: what the page starts from, as ``accord manifest stats --thresholds`` reads it.
    ``progress``: where the load's progress lines go (stderr by default: a large output takes a
    while, and a silent wait reads as a hang)."""
    import socket

    import uvicorn

    base = load_thresholds(thresholds)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.bind((host, port))
        sock.listen(128)  # connections queue from here on, so the URL works once it is printed
    except OSError as e:
        sock.close()
        raise BindError(f"cannot listen on {host}:{port} ({e.strerror}): pass another --port") from None
    cat = Catalog(out_uri, memory_limit=memory_limit, progress=progress or stderr_line, thresholds=base)
    try:
        url = f"http://{host}:{sock.getsockname()[1]}/"
        if on_ready:
            on_ready(url)
        config = uvicorn.Config(create_app(cat, base), log_level="warning", access_log=False)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        cat.close()
        sock.close()
