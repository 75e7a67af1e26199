"""Fixtures for the ingest job tests: run the real ``accord`` command in a subprocess.

A subprocess keeps Ray out of the pytest process (no leaked workers, no shared state) and
is how users run it. The one full run over the sample bucket is module-shared.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKE_SECRET = "sekrit-6f1d2c-never-log-me"


def accord_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)  # never attach to some other cluster by accident
    env.setdefault("ACCORD_CACHE", str(ROOT / ".cache" / "accord"))
    env.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".cache" / "torch_extensions"))
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["DS_ACCELERATOR"] = "cpu"
    # A credential-looking variable: the tests check it never reaches any output or log.
    env["AWS_SECRET_ACCESS_KEY"] = FAKE_SECRET
    env.update(extra)
    return env


def accord_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "accord.cli.main", *args]


@pytest.fixture(scope="session")
def run_accord() -> Callable[..., subprocess.CompletedProcess]:
    def run(
        *args: str, timeout: float = 600, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            accord_cmd(*args),
            cwd=ROOT,
            env=env or accord_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return proc

    return run


@pytest.fixture(scope="session")
def make_env() -> Callable[..., dict[str, str]]:
    return accord_env


@pytest.fixture(scope="session")
def cmd() -> Callable[..., list[str]]:
    return accord_cmd


@pytest.fixture(scope="session")
def secret() -> str:
    return FAKE_SECRET
