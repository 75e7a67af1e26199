"""PEP 420 layout: stdlib ``tokenize`` is never shadowed; the wheel ships every module and data file."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import PORTIONS, ROOT


def test_code_folders_are_namespace_portions() -> None:
    for folder in PORTIONS.values():
        assert (ROOT / folder).is_dir(), folder
        assert not (ROOT / folder / "__init__.py").exists(), f"{folder}/__init__.py must not exist (PEP 420)"


def test_import_tokenize_from_repo_root_is_stdlib() -> None:
    code = (
        "import tokenize, inspect, sysconfig, pathlib;"
        "import accord.tokenize.batching as v;"
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


def _code_data_files() -> set[str]:
    """Every non-Python file of the code folders (recipes, ...), as its path inside the wheel."""
    names = set()
    for package, folder in PORTIONS.items():
        for path in (ROOT / folder).rglob("*"):
            rel = path.relative_to(ROOT / folder)
            hidden = any(part.startswith(".") or part == "__pycache__" for part in rel.parts)
            if path.is_file() and path.suffix not in (".py", ".pyc") and not hidden:
                names.add("/".join([*package.split("."), *rel.parts]))
    return names


@pytest.mark.integration
def test_wheel_contains_every_module(built_wheel: Path) -> None:
    with zipfile.ZipFile(built_wheel) as zf:
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


@pytest.mark.integration
def test_wheel_ships_every_data_file(built_wheel: Path) -> None:
    # An installed accord reads these at run time (train/recipes/*.yaml): pyproject's package-data.
    data = _code_data_files()
    assert any(n.startswith("accord/train/recipes/") for n in data), "the audit found no recipes"
    with zipfile.ZipFile(built_wheel) as zf:
        missing = data - set(zf.namelist())
    assert not missing, f"data files missing from the wheel (add them to package-data): {sorted(missing)}"


# Which rooms each room may import (besides itself): three floors, each standing only on the
# floors below it (README "Folder map"). The floor (accord.core) stands on nothing; model/ sees
# the vocabulary contract, never tokenize/; tokenize/ reads manifests through the core contract,
# never pipeline/; train/ is given its evaluator instead of importing ASR or synthesis.
FLOOR = {"accord.core", "accord.jobs"}
ROOMS = {"accord.pipeline", "accord.tokenize", "accord.model", "accord.train"}
LAYERS: dict[str, set[str]] = {
    "accord.core": set(),
    "accord.jobs": {"accord.core"},
    "accord.pipeline": {"accord.core", "accord.jobs"},
    "accord.tokenize": {"accord.core", "accord.jobs"},
    "accord.model": {"accord.core"},
    "accord.train": {"accord.core", "accord.jobs", "accord.model", "accord.tokenize"},
    # top floor: what users run, composing the rooms; only the CLI reaches across it
    "accord.app": FLOOR | ROOMS,
    "accord.report": FLOOR | ROOMS,
    "accord.samples": FLOOR | ROOMS,
    "accord.explore": FLOOR | ROOMS,
    "accord.cli": FLOOR | ROOMS | {"accord.app", "accord.report", "accord.samples", "accord.explore"},
}


def test_the_layering_keeps_the_promised_separations() -> None:
    """The separations the README promises, so that loosening LAYERS is a visible test change."""
    top = {"accord.cli", "accord.app", "accord.report", "accord.samples", "accord.explore"}
    assert not LAYERS["accord.train"] & ({"accord.pipeline"} | top)
    assert not LAYERS["accord.tokenize"] & ({"accord.pipeline", "accord.train", "accord.model"} | top)
    assert not LAYERS["accord.pipeline"] & ({"accord.tokenize", "accord.train", "accord.model"} | top)
    assert not LAYERS["accord.model"] & ({"accord.tokenize", "accord.pipeline", "accord.train"} | top)
    for floor in FLOOR:
        assert LAYERS[floor] <= {"accord.core"}


def test_every_module_is_in_a_room() -> None:
    """A module outside every room would escape the layering check: each one belongs to one."""
    homeless = sorted(m for m in _code_modules() if _room(m) is None and m != "accord")
    assert not homeless, f"modules in no room of LAYERS (add the room or move them): {homeless}"


def _room(module: str) -> str | None:
    return next(
        (r for r in sorted(LAYERS, key=len, reverse=True) if module == r or module.startswith(r + ".")), None
    )


def _module_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    folder = "/".join(parts[:1])
    package = next((p for p, f in PORTIONS.items() if f == folder and p != "accord"), None)
    name = ".".join([package, *parts[1:]]) if package else ".".join(parts)
    return name.removesuffix(".__init__")


def test_rooms_import_only_the_rooms_below_them() -> None:
    import ast

    bad = []
    files = [p for folder in set(PORTIONS.values()) for p in (ROOT / folder).rglob("*.py")]
    for path in files:
        room = _room(_module_of(path))
        if room is None:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if not name.startswith("accord"):
                    continue
                target = _room(name) or name
                if target != room and target not in LAYERS[room]:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} {room} -> {name}")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_no_private_names_across_modules() -> None:
    import ast

    bad = []
    files = [p for folder in set(PORTIONS.values()) for p in (ROOT / folder).rglob("*.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("accord"):
                bad += [
                    f"{path.relative_to(ROOT)}:{node.lineno} {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert not bad, "private names imported from another module:\n" + "\n".join(bad)
