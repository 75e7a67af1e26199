"""The PEP 420 layout holds: stdlib ``tokenize`` is never shadowed; the wheel ships every module."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PORTIONS: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
    "package-dir"
]


def test_code_folders_are_namespace_portions() -> None:
    for folder in PORTIONS.values():
        assert (ROOT / folder).is_dir(), folder
        assert not (ROOT / folder / "__init__.py").exists(), f"{folder}/__init__.py must not exist (PEP 420)"


def test_import_tokenize_from_repo_root_is_stdlib() -> None:
    code = (
        "import tokenize, inspect, sysconfig, pathlib;"
        "import accord.tokenize.vocab as v;"
        "std = pathlib.Path(sysconfig.get_paths()['stdlib']).resolve();"
        "assert pathlib.Path(tokenize.__file__).resolve().parent == std, tokenize.__file__;"
        "assert hasattr(tokenize, 'generate_tokens');"
        "assert pathlib.Path(v.__file__).resolve().parent.name == 'tokenize';"
        "inspect.getsource(inspect.getsource);"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_torch_imports_from_repo_root() -> None:
    # torch's import machinery uses inspect/tokenize; a shadowing tokenize/ package breaks it.
    out = subprocess.run(
        [sys.executable, "-c", "import torch, accord.model, accord.tokenize; print(torch.__version__)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr


def _code_modules() -> set[str]:
    """Every module under the code folders, as the dotted name it has inside ``accord``."""
    names = set()
    for package, folder in PORTIONS.items():
        for py in (ROOT / folder).rglob("*.py"):
            rel = py.relative_to(ROOT / folder).with_suffix("")
            if "__pycache__" in rel.parts:
                continue
            names.add(".".join([package, *rel.parts]))
    return names


@pytest.mark.integration
def test_wheel_contains_every_module(tmp_path: Path) -> None:
    # Build from a copy: setuptools writes build/ and *.egg-info into the source tree.
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".venv", ".cache", ".git", "build", "dist", "*.egg-info", "__pycache__"
        ),
    )
    out = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (wheel,) = tmp_path.glob("accord-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        in_wheel = {
            n[: -len(".py")].replace("/", ".")
            for n in zf.namelist()
            if n.endswith(".py") and n.startswith("accord/")
        }
        top = {n.split("/")[0] for n in zf.namelist()}
    missing = _code_modules() - in_wheel
    assert not missing, f"modules missing from the wheel: {sorted(missing)}"
    # Nothing lands at the top level of site-packages except the accord package and metadata.
    assert top <= {"accord", *(t for t in top if t.endswith(".dist-info"))}, top
