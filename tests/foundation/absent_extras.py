"""pytest plugin of the Python 3.12 check: a test needing a package that accord[train] does not
install is skipped, naming the module, instead of failing.

``test_installed_wheel`` runs the model and trainer unit tests against ``accord[train]``
installed alone; a few of them use a component of another extra (the DAC codec of
``[pipeline]``, ...). Only a ``ModuleNotFoundError`` for a top-level module listed in
``$ACCORD_ABSENT_MODULES`` (those the full dev install has and the [train] venv lacks) becomes
a skip; every other failure stays a failure. Loaded with ``-p``, never collected.
"""

from __future__ import annotations

import os
import re

import pytest

ABSENT_MODULES = frozenset(filter(None, os.environ.get("ACCORD_ABSENT_MODULES", "").split(",")))
SKIP_REASON = "not installed by accord[train]"
_NO_MODULE = re.compile(r"ModuleNotFoundError: No module named '([\w.]+)'")


def absent_module(name: str | None) -> str | None:
    """The top-level module of ``name`` when it is one the [train] install lacks by design."""
    top = (name or "").split(".")[0]
    return top if top in ABSENT_MODULES else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    error = call.excinfo.value if report.failed and call.excinfo is not None else None
    module = absent_module(error.name) if isinstance(error, ModuleNotFoundError) else None
    if module:
        report.outcome = "skipped"
        report.longrepr = (str(item.path), (item.location[1] or 0) + 1, f"Skipped: {module} {SKIP_REASON}")
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    report = yield
    match = _NO_MODULE.search(str(report.longrepr)) if report.failed else None
    module = absent_module(match.group(1)) if match else None
    if module:
        report.outcome = "skipped"
        report.longrepr = (str(collector.path), 0, f"Skipped: {module} {SKIP_REASON}")
        report.result = []
    return report
