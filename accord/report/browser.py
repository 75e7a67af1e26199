"""Open a report in headless Chromium and check what a person would see: plots and audio.

The report's own load handler marks each decoded image (``data-decoded="WxH"``) and the audio
element's duration (``data-duration``); ``--dump-dom`` returns the page after it ran. Used by
the tests and at the end of ``make demo``: ``python -m accord.report.browser report.html``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
    "--virtual-time-budget=8000",
]  # fmt: skip


def chromium_path() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return found or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def run_chromium(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Headless Chromium with a throwaway profile (no network chatter, no sandbox as root)."""
    exe = chromium_path()
    if exe is None:
        raise FileNotFoundError("chromium is not installed (scripts/setup.sh installs it)")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.found.append((tag, dict(attrs)))


def rendered_elements(html: Path) -> list[tuple[str, dict[str, str | None]]]:
    """Start tags of the page as Chromium left it after its scripts ran."""
    out = run_chromium("--dump-dom", Path(html).resolve().as_uri())
    if out.returncode != 0:
        raise RuntimeError(f"chromium failed on {html}: {out.stderr[-2000:]}")
    parser = _Elements()
    parser.feed(out.stdout)
    return parser.found


def problems(html: Path, min_plots: int = 1, audio: bool = True) -> list[str]:
    """What is wrong with the rendered report (empty when plots decoded and audio loaded)."""
    elements = rendered_elements(html)
    found: list[str] = []
    body = [a for t, a in elements if t == "body"]
    if not body or body[0].get("data-ready") != "1":
        found.append("the page's load handler did not run")
    plots = [a for t, a in elements if t == "img" and "plot" in (a.get("class") or "")]
    if len(plots) < min_plots:
        found.append(f"{len(plots)} plots, expected at least {min_plots}")
    for a in plots:
        w, _, h = (a.get("data-decoded") or "0").partition("x")
        if int(w or 0) <= 100 or int(h or 0) <= 100:
            found.append(f"plot {a.get('alt')!r} did not decode ({a.get('data-decoded')})")
    if audio:
        players = [a for t, a in elements if t == "audio"]
        if not players:
            found.append("no audio player")
        for a in players:
            if "controls" not in a or a.get("data-duration") in (None, "error"):
                found.append(f"audio {a.get('src', '')[:40]!r} did not load")
    return found


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m accord.report.browser REPORT.html", file=sys.stderr)
        return 2
    found = problems(Path(args[0]), min_plots=3)
    for p in found:
        print(f"report check: {p}", file=sys.stderr)
    if not found:
        print(f"report check: {args[0]} renders in headless Chromium; plots decoded, audio loads")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
