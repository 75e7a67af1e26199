"""Benchmarks live in the top-level ``bench`` package of the checkout (not installed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)
