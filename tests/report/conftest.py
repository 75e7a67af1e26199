"""Session fixtures for the report tests: one run dir of real artifacts and its report, built once."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from accord.report.browser import chromium_path, run_chromium

from ._artifacts import make_run


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
    """Headless Chromium (accord.report.browser); skips when it is not installed."""
    if chromium_path() is None:
        pytest.skip("chromium is not installed (scripts/setup.sh installs it)")
    return run_chromium(*args, timeout=timeout)
