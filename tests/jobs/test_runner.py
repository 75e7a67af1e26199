"""The job runner: the same toy graph in-process and on Ray gives the same per-unit commits,
error rows and batches; a worker that dies leaves its unit incomplete; Ray is sized by
``num_cpus`` or joined at an address, never a hard-coded core count."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from accord.core.errors import error_row
from accord.jobs.driver import drive
from accord.jobs.graph import JobGraph, PoolSpec, iter_ray
from accord.jobs.local import iter_local
from accord.jobs.ray_init import init_ray
from accord.jobs.rows import TIMINGS, Unit
from accord.jobs.spec import StepSpec

HERE = str(Path(__file__).parent)

GRAPH = JobGraph(
    source=[StepSpec("toy_steps:Split")],
    pools=[PoolSpec("pool:square", StepSpec("toy_steps:Square"), num_cpus=0.5, batch_size=1)],
    post=[StepSpec("toy_steps:Tag")],
    bundle=2,  # two items per pool call
    task_max_retries=0,
    actor_max_task_retries=0,
)
UNITS = [
    Unit("a", {"source_uri": "/r/a.wav", "n": 5}),
    Unit("b", {"source_uri": "/r/b.wav", "n": 2}),
    Unit("bad", {"source_uri": "/r/bad.wav", "bad": True}),
]


class Commits:
    """A sink that commits each unit's rows as one record when it completes (like a part file)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.open: dict[str, tuple[list, list]] = {}
        self.committed: dict[str, dict] = {}
        self.incomplete_keys: list[str] = []

    def item(self, key, item):
        assert not any(hasattr(v, "shape") for v in item.values()), "arrays never reach the driver"
        self.open.setdefault(key, ([], []))[0].append({k: v for k, v in item.items() if k != TIMINGS})

    def error(self, key, e):
        row = error_row(e["input_uri"], e["step"], e["error_type"], e["reason"], self.run_id, e["clip_id"])
        self.open.setdefault(key, ([], []))[1].append(row)

    def complete(self, key, summary):
        items, errors = self.open.pop(key, ([], []))
        self.committed[key] = {
            "n_expected": summary["n_expected"],
            "items": sorted(items, key=lambda it: it["clip_id"]),
            "errors": sorted(errors, key=lambda e: str(e["clip_id"])),
        }

    def incomplete(self, key):
        self.open.pop(key, None)
        self.incomplete_keys.append(key)


@pytest.fixture
def toy_path(monkeypatch):
    monkeypatch.syspath_prepend(HERE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))


def _check(sink: Commits) -> None:
    assert sorted(sink.committed) == ["a", "b", "bad"] and sink.incomplete_keys == []
    a = sink.committed["a"]
    assert [it["tag"] for it in a["items"]] == [
        "/r/a.wav#0=0",
        "/r/a.wav#1=1",
        "/r/a.wav#2=4",
        "/r/a.wav#4=16",
    ]
    # bundles [0, 1] [2, 3] [4]: the first ran as one batch; the spoiled one item by item
    assert [it["batch"] for it in a["items"]] == [2, 2, 1, 1]
    assert [(e["clip_id"], e["step"], e["error_type"], e["run_id"]) for e in a["errors"]] == [
        ("/r/a.wav#3", "square", "too_odd", "r1")
    ]
    bad = sink.committed["bad"]
    assert bad["items"] == [] and bad["n_expected"] == 1
    assert [(e["input_uri"], e["step"], e["error_type"]) for e in bad["errors"]] == [
        ("/r/bad.wav", "split", "not_audio")
    ]


def test_local_executor_commits_each_unit_with_its_errors(toy_path) -> None:
    sink = Commits("r1")
    result = drive(iter_local(UNITS, GRAPH), [u.key for u in UNITS], sink)
    assert result.incomplete == []
    _check(sink)


@pytest.mark.integration
def test_ray_matches_local_and_a_dead_worker_leaves_its_unit_incomplete(toy_path) -> None:
    import ray

    local = Commits("r1")
    drive(iter_local(UNITS, GRAPH), [u.key for u in UNITS], local)
    assert init_ray(num_cpus=3) is True
    try:
        assert ray.cluster_resources()["CPU"] == 3  # the count asked for, not the machine's or a constant
        assert init_ray(num_cpus=1) is False  # already connected: left as it is
        on_ray = Commits("r1")
        drive(iter_ray(UNITS, GRAPH), [u.key for u in UNITS], on_ray)
        _check(on_ray)
        assert on_ray.committed == local.committed
        in_pool = Commits("r1")  # the post steps in the pool's actors (a fused ingest): the same rows
        drive(iter_ray(UNITS, replace(GRAPH, post_in_pool=True)), [u.key for u in UNITS], in_pool)
        assert in_pool.committed == local.committed

        poison = [*UNITS[:2], Unit("poison", {"source_uri": "/r/p.wav", "poison": True})]
        sink = Commits("r2")
        result = drive(iter_ray(poison, GRAPH), [u.key for u in poison], sink)
        assert result.incomplete == sink.incomplete_keys == ["poison"]
        assert sorted(sink.committed) == ["a", "b"]

        # Another process joins this cluster by address (or RAY_ADDRESS): its num_cpus is ignored.
        address = ray.get_runtime_context().gcs_address
        code = (
            "import ray, sys; from accord.jobs.ray_init import init_ray; "
            "init_ray(sys.argv[1] or None, num_cpus=1); print(int(ray.cluster_resources()['CPU']))"
        )
        env = {**os.environ, "RAY_ADDRESS": ""}
        joined = subprocess.run(
            [sys.executable, "-c", code, address], env=env, capture_output=True, text=True
        )
        assert joined.stdout.split()[-1:] == ["3"], joined.stderr[-2000:]
        env["RAY_ADDRESS"] = address
        joined = subprocess.run([sys.executable, "-c", code, ""], env=env, capture_output=True, text=True)
        assert joined.stdout.split()[-1:] == ["3"], joined.stderr[-2000:]
    finally:
        ray.shutdown()


def test_actor_reservations_fit_a_small_machine() -> None:
    """Five pools at 0.5 CPU never all start on 2 CPUs (the ingest hung with four up): they are
    scaled to fit beside one source task and one post actor (none when the last pool runs the
    post steps); a large cluster keeps them as given."""
    from accord.jobs.graph import fit_to_cpus

    spec = StepSpec("m:S")
    pools = [PoolSpec(f"p{i}", spec, num_cpus=0.5) for i in range(5)]
    graph = JobGraph(source=[spec], pools=pools, post=[spec])
    small = fit_to_cpus(graph, 2.0)
    total = sum(p.num_cpus for p in small.pools) + small.source_num_cpus + small.post_num_cpus
    assert total <= 2.0 and [p.num_cpus for p in small.pools] == [0.25] * 5
    assert fit_to_cpus(graph, 16.0) is graph and fit_to_cpus(graph, 0.0) is graph  # autoscaling head
    in_pool = fit_to_cpus(replace(graph, post_in_pool=True), 2.0)
    assert [p.num_cpus for p in in_pool.pools] == [0.3] * 5 and not in_pool.post_pool()
