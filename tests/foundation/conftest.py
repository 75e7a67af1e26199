"""Foundation fixtures: the wheel of the current tree, built once per session."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PORTIONS: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
    "package-dir"
]
BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md")  # README.md: the project's `readme`


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory) -> Path:
    """accord's wheel, built offline by this interpreter's setuptools from a copy of the build
    inputs and code folders (setuptools writes build/ and *.egg-info into the source it builds)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        shutil.copy2(ROOT / name, src / name)
    for folder in set(PORTIONS.values()):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(base), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (wheel,) = base.glob("accord-*.whl")
    return wheel
