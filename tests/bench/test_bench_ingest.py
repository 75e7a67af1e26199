"""The ingest bench's all-cores-busy cost measurement ends, with the workers' error, when they fail."""

from __future__ import annotations

import time

import pytest

from accord.pipeline.job.config import IngestConfig
from bench import bench_ingest


def test_busy_model_costs_reports_a_failing_worker_and_never_waits_for_it():
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"busy_model_costs: IndexError"):
        bench_ingest.busy_model_costs(IngestConfig(num_cpus=2, progress=False), [], [], 2)
    assert time.monotonic() - t0 < 120
