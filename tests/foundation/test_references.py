"""Comments, docstrings and docs cite only what exists: every ``accord.<module>.<name>`` and every
repo path (``model/attention.py``, ``tests/gpu/conftest.py``) resolves in this tree.

Static, no imports of the cited modules: a dotted name resolves when its longest module prefix is
a file or folder of a portion (``pyproject.toml``'s ``package-dir``) and the next name is defined
at that module's top level (the one after it anywhere in the module). Not checked, on purpose:
names in string literals (``"accord.schema_version"`` metadata keys, logger names), domains
(``accord.dev/role``), and paths outside the repo's folders, such as the external projects a
docstring names (ZONOS2's ``tts/prompt.py``, zonos2.cpp's ``src/zonos2-prompt.cpp``).
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

from .conftest import PORTIONS, ROOT

FOLDERS = sorted({*PORTIONS.values(), "bench", "scripts", "infra", "docs", "tests"})
TOP_FILES = ("README.md", "Makefile", "pyproject.toml", "setup.py")
SUFFIXES = {".py", ".md", ".sh", ".toml", ".yaml", ".yml"}
# Paths cited as not existing on purpose, or written by runs rather than kept in the tree.
NOT_IN_TREE = {
    "tokenize/__init__.py",  # README: why it must not exist (stdlib ``tokenize``)
    "pipeline/steps/clipping.py",  # docs/signals.md: the worked example of a signal to add
}

DOTTED = re.compile(r"""(?<![\w.'"/-])accord(?:\.\w+)+(?![\w/'"-])""")
REPO_PATH = re.compile(
    r"(?<![\w./$-])((?:" + "|".join(FOLDERS) + r")/(?:[\w.-]+/)*[\w-]+\.(?:py|md|sh|toml|yaml|yml|json))\b"
)


def _texts() -> list[Path]:
    out = [ROOT / n for n in TOP_FILES if (ROOT / n).is_file()]
    for folder in FOLDERS:
        for p in sorted((ROOT / folder).rglob("*")):
            wanted = p.suffix in SUFFIXES or p.name == "Makefile"
            if wanted and p.is_file() and "__pycache__" not in p.parts:
                out.append(p)
    return out


def _ignored_outputs() -> set[str]:
    """Literal paths of .gitignore (run outputs such as bench/results.json)."""
    gi = ROOT / ".gitignore"
    lines = gi.read_text().splitlines() if gi.is_file() else []
    return {s for s in (line.strip() for line in lines) if s and not s.startswith("#") and "*" not in s}


def _module(parts: list[str]) -> tuple[Path | None, int]:
    """The file (``__init__.py`` of a package, or a namespace folder) of the longest module prefix
    of ``parts``, and that prefix's length."""
    prefixes = sorted(PORTIONS.items(), key=lambda kv: -len(kv[0]))
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        for pkg, folder in prefixes:
            if name == pkg or name.startswith(pkg + "."):
                base = ROOT / folder / name[len(pkg) :].lstrip(".").replace(".", "/")
                if base.with_suffix(".py").is_file():
                    return base.with_suffix(".py"), n
                if (base / "__init__.py").is_file():
                    return base / "__init__.py", n
                if base.is_dir():
                    return base, n
                break
    return None, 0


@functools.cache
def _top_level_names(path: Path) -> frozenset[str]:
    """Names bound at module level, also under ``if``/``try`` (optional imports)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                names.add(sub.id)
            elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(sub.name)
            elif isinstance(sub, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in sub.names)
    return frozenset(names)


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    path, n = _module(parts)
    if path is None:
        return False
    rest = parts[n:]
    if not rest:
        return True
    if path.is_dir():  # a namespace folder: the next name would have been a module
        return False
    if rest[0].startswith("__") or rest[0] not in _top_level_names(path):
        return rest[0] in ("__file__", "__name__", "__doc__")
    return len(rest) == 1 or re.search(rf"\b{re.escape(rest[1])}\b", path.read_text()) is not None


def _path_exists(cited: str, where: Path) -> bool:
    return any((base / cited).exists() for base in (ROOT, *where.parents))


def test_cited_modules_symbols_and_paths_exist() -> None:
    skip = NOT_IN_TREE | _ignored_outputs()
    bad = []
    for f in _texts():
        rel = f.relative_to(ROOT)
        for i, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            for m in DOTTED.finditer(line):
                if not _resolves(m.group(0)):
                    bad.append(f"{rel}:{i}: {m.group(0)}")
            for m in REPO_PATH.finditer(line):
                cited = m.group(1)
                if cited in skip or any(seg.isupper() for seg in Path(cited).stem.split("_")):
                    continue  # STAGE.json and other placeholders
                if not _path_exists(cited, f):
                    bad.append(f"{rel}:{i}: {cited}")
    assert not bad, "stale references:\n" + "\n".join(bad)
