"""Package list for the PEP 420 portions mapped in pyproject.toml's package-dir.

setuptools' `packages.find` does not apply a package-dir mapping to discovered names,
so the subpackages of each portion are listed here (namespace packages included).
"""

import tomllib
from pathlib import Path

from setuptools import find_namespace_packages, setup

_ROOT = Path(__file__).parent
_PORTIONS: dict[str, str] = tomllib.loads((_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
    "package-dir"
]


def _packages() -> list[str]:
    names = []
    for package, folder in _PORTIONS.items():
        names.append(package)
        for sub in find_namespace_packages(folder, exclude=["*__pycache__*"]):
            # Nested portions (accord.tokenize inside accord/) are listed by their own mapping.
            if f"{package}.{sub}" not in _PORTIONS:
                names.append(f"{package}.{sub}")
    return sorted(set(names))


setup(packages=_packages())
