"""Session fixtures for the report tests: one run dir of real artifacts and its report, built once."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from ._artifacts import make_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
    "--virtual-time-budget=8000",
]  # fmt: skip


@dataclass
class BuiltReport:
    run_dir: Path
    html: Path
    facts: dict


@pytest.fixture(scope="session")
def built_report(tmp_path_factory) -> BuiltReport:
    from click.testing import CliRunner

    from accord.cli.cmd_report import report

    run_dir = tmp_path_factory.mktemp("run")
    facts = make_run(run_dir)
    out = run_dir / "report.html"
    res = CliRunner().invoke(report, [str(run_dir), "--out", str(out)])
    assert res.exit_code == 0, (res.output, res.exception)
    return BuiltReport(run_dir, out, facts)


def chromium(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run headless Chromium with a throwaway profile; skips when it is not installed."""
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (scripts/setup.sh installs it)")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
