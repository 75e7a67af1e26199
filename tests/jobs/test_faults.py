"""Nothing hangs after an error, and a local Ray ends with its driver (#22 items 1 and 9).

An error in the driver's loop (a commit into an output that is not a folder, a full disk, a
driver-side step raising) left Ray Data's executor open: the job printed its traceback, then
waited for ever at exit in ``StreamingExecutor.shutdown`` after ``ray.shutdown()``. And after a
``kill -9`` of the driver, Ray's agents outlived it by a minute.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from accord.jobs.driver import drive
from accord.jobs.graph import JobGraph
from accord.jobs.local import iter_local
from accord.jobs.rows import Row, Unit
from accord.jobs.spec import StepSpec
from accord.jobs.tether import children, tree

HERE = Path(__file__).parent
ROOT = HERE.parents[1]

# Tasks only (no actor pool: fewer worker processes to start), and work left at the error.
GRAPH = JobGraph(source=[StepSpec("toy_steps:Split")], bundle=2, task_max_retries=0)
UNITS = [Unit(f"u{i}", {"source_uri": f"/r/{i}.wav", "n": 2}) for i in range(16)]

# The faults of the driver's write path and loop, by where they strike.
FAULTS = {
    "disk_full": ("complete", OSError(errno.ENOSPC, "No space left on device")),
    "output_not_a_folder": ("item", NotADirectoryError(errno.ENOTDIR, "Not a directory")),
    "driver_step_raises": ("complete", KeyError("language")),
}


class FaultySink:
    """A sink whose ``hook`` raises ``exc`` (what a commit into a bad output or full disk does)."""

    def __init__(self, hook: str, exc: BaseException) -> None:
        self.hook, self.exc = hook, exc

    def _maybe_fail(self, hook: str) -> None:
        if hook == self.hook:
            raise self.exc

    def item(self, key, item) -> None:
        self._maybe_fail("item")

    def error(self, key, error) -> None:
        self._maybe_fail("error")

    def complete(self, key, summary) -> None:
        self._maybe_fail("complete")

    def incomplete(self, key) -> None:
        self._maybe_fail("incomplete")


def _watched(batches: Iterator[list[Row]], log: list[str]) -> Iterator[list[Row]]:
    try:
        yield from batches
    finally:
        log.append("closed")  # where Ray Data's executor shuts down


@pytest.fixture
def toy_path(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_an_error_in_the_driver_closes_the_batches_before_it_leaves(toy_path, fault: str) -> None:
    """The executor stops before the caller's ``finally: ray.shutdown()`` runs, not when the
    traceback is collected (at exit, after Ray is gone, where it hung)."""
    hook, exc = FAULTS[fault]
    log: list[str] = []
    try:
        drive(_watched(iter_local(UNITS, GRAPH), log), [u.key for u in UNITS], FaultySink(hook, exc))
    except type(exc) as e:
        assert e is exc
        assert log == ["closed"], "the batches were still open when the error reached the caller"
    else:
        pytest.fail("the sink's error was swallowed")


# The ingest and tokenize drivers' shape: start Ray, drive the rows into a sink, shut Ray down
# in `finally`; the sink hits a full disk on the first unit it commits.
ON_RAY = """
import errno, sys
from accord.jobs.driver import drive
from accord.jobs.graph import iter_ray
from accord.jobs.ray_init import init_ray
from test_faults import GRAPH, UNITS, FaultySink

class DiskFull(FaultySink):
    def complete(self, key, summary):
        print("failing at the first commit", file=sys.stderr, flush=True)
        super().complete(key, summary)

init_ray(num_cpus=2)
try:
    drive(iter_ray(UNITS, GRAPH), [u.key for u in UNITS],
          DiskFull("complete", OSError(errno.ENOSPC, "No space left on device")))
finally:
    import ray
    ray.shutdown()
"""

EXIT_BOUND_S = 20  # from the error to the process's exit (it took about 3 s)
START_BOUND_S = 240  # Ray's start and the first unit, on a loaded 2-core machine


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


def _stop(proc: subprocess.Popen) -> None:
    """Kill what a test started and left running: the driver's process group (its own session)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.integration
def test_a_driver_error_on_ray_exits_non_zero_within_seconds() -> None:
    proc = subprocess.Popen([sys.executable, "-c", ON_RAY], cwd=ROOT, env=_env(), text=True,
                            stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    timer = threading.Timer(START_BOUND_S, _stop, [proc])
    timer.start()
    try:
        err = ""
        for line in proc.stderr:  # until the sink's error
            err += line
            if line.startswith("failing at"):
                break
        assert "failing at" in err, err[-3000:]
        try:
            proc.wait(timeout=EXIT_BOUND_S)  # what it prints after the error fits in the pipe
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {EXIT_BOUND_S} s after its error (the old hang in "
                        "StreamingExecutor.shutdown after ray.shutdown())")  # fmt: skip
        err += proc.stderr.read()
        assert proc.returncode != 0 and "No space left on device" in err, err[-3000:]
    finally:
        timer.cancel()
        _stop(proc)


KILL_BOUND_S = 10  # from the driver's SIGKILL until none of its Ray processes is left (about 1 s)


def _name(pid: int) -> str:
    try:
        return Path(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()).name
    except OSError:
        return "(gone)"


@pytest.mark.integration
def test_a_local_rays_processes_end_with_a_killed_driver() -> None:
    """Before, ``ray::DashboardAgent`` and ``ray::RuntimeEnvAgent`` outlived a ``kill -9`` of
    the driver by 60-75 s (reporting the raylet's death to a GCS that had died too)."""
    code = "import time; from accord.jobs.ray_init import init_ray; init_ray(num_cpus=1); print('up', flush=True); time.sleep(600)"  # noqa: E501
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=_env(), text=True,
                            stdout=subprocess.PIPE, start_new_session=True)  # fmt: skip
    session: set[tuple[int, int]] = set()
    timer = threading.Timer(START_BOUND_S, _stop, [proc])
    timer.start()
    try:
        assert proc.stdout.readline().strip() == "up"
        session = tree(children(proc.pid))
        names = " ".join(_name(pid) for pid, _ in session)
        assert "raylet" in names and "ray::DashboardAgent" in names and "ray::RuntimeEnvAgent" in names, names
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + KILL_BOUND_S
        while tree(session) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [_name(pid) for pid, _ in tree(session)]
        assert not left, f"alive {KILL_BOUND_S} s after the driver's SIGKILL: {left}"
    finally:
        timer.cancel()
        _stop(proc)
        for pid, _ in tree(session):
            os.kill(pid, signal.SIGKILL)
