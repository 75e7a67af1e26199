"""What an ingest process imports before it runs a model.

Every Ray worker unpickles the job's graph, which names every step's class; the driver builds
the plan from the same modules. torch alone costs ~2 s of CPU and ~250 MB per process, so only
the processes whose model needs it (the speaker pool's actor) may import it.
"""

from __future__ import annotations

import subprocess
import sys

GRAPH_IMPORTS = """
import sys
import ray.cloudpickle as cp
from accord.pipeline.job.config import IngestConfig
from accord.pipeline.job.plan import build_graph, build_plan
from accord.jobs.graph import actor_class
cfg = IngestConfig(pool_layout="per-model")  # fused, every actor holds the speaker model
graph = build_graph(build_plan(cfg), cfg, cpus=2)
blobs = [cp.dumps(graph)] + [cp.dumps(actor_class(p)) for p in graph.pools if p.name != "speaker_consistency"]
assert "torch" not in sys.modules, "the driver imported torch"
print(len(blobs))
"""

WORKER_IMPORTS = """
import sys
import ray.cloudpickle as cp
blobs = cp.loads(sys.stdin.buffer.read())
graph = cp.loads(blobs[0])
actors = [cp.loads(b) for b in blobs[1:]]
assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("accord"))
print(len(actors))
"""


def test_only_the_speaker_pool_imports_torch() -> None:
    dump = GRAPH_IMPORTS.replace("print(len(blobs))", "sys.stdout.buffer.write(cp.dumps(blobs))")
    driver = subprocess.run([sys.executable, "-c", dump], capture_output=True, timeout=120)
    assert driver.returncode == 0, driver.stderr.decode()[-3000:]
    worker = subprocess.run(
        [sys.executable, "-c", WORKER_IMPORTS], input=driver.stdout, capture_output=True, timeout=120
    )
    assert worker.returncode == 0, worker.stderr.decode()[-3000:]
    assert int(worker.stdout.decode().split()[-1]) == 4  # LID, both ASR pools, DNSMOS


def test_the_step_package_exports_resolve_lazily() -> None:
    code = (
        "import sys, accord.pipeline.steps as s\n"
        "assert 'torch' not in sys.modules and 'accord.pipeline.steps.asr' not in sys.modules\n"
        "assert s.VadStep.__module__ == 'accord.pipeline.steps.vad' and 'VadStep' in dir(s)\n"
        "assert all(getattr(s, n) is not None for n in s.__all__)\n"
        "try:\n    s.NoSuchStep\nexcept AttributeError:\n    pass\nelse:\n    raise SystemExit(1)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
