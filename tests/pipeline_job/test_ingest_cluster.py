"""Submit ``accord ingest --address`` to a local ``ray start --head`` cluster this test owns.

The cluster runs with token authentication (a token made here, passed by environment to both
sides), on free ports and its own temp dir, and is stopped by its own process group: never
``ray stop``, which would stop every Ray on the machine.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from accord.core.manifest import read_manifest

pytestmark = pytest.mark.integration


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _stop_group(proc: subprocess.Popen, temp_dir: str) -> None:
    """SIGTERM this cluster's process group, then SIGKILL whatever of it is left (by pgid and temp dir)."""
    import psutil

    def alive() -> list:
        mine = []
        for p in psutil.process_iter(["pid", "cmdline", "status"]):
            if p.info["status"] == psutil.STATUS_ZOMBIE:  # dead, waiting for a reaper
                continue
            try:
                if os.getpgid(p.pid) == proc.pid or temp_dir in " ".join(p.info["cmdline"] or []):
                    mine.append(p)
            except (ProcessLookupError, psutil.Error):
                continue
        return mine

    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while alive() and time.monotonic() < deadline:
        time.sleep(0.5)
    # SIGKILL what is left until none remains: under load a killed process can still read as
    # running for a moment, and a raylet may fork a worker while it is being torn down.
    deadline = time.monotonic() + 30
    while (left := alive()) and time.monotonic() < deadline:
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.kill()
        time.sleep(0.5)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    assert not alive(), "processes of the test cluster survived"


@pytest.fixture(scope="module")
def ray_cluster(make_env):
    ray_bin = Path(sys.executable).with_name("ray")
    temp_dir = tempfile.mkdtemp(prefix="rayt-", dir="/tmp")  # short: unix socket paths are limited
    gcs, dash, client, agent, agent_grpc, rt_env, metrics = _free_ports(7)
    token = secrets.token_hex(16)
    env = make_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    args = [
        str(ray_bin), "start", "--head", "--block", "--num-cpus", "2",
        "--port", str(gcs), "--dashboard-port", str(dash), "--dashboard-host", "127.0.0.1",
        "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent),
        "--dashboard-agent-grpc-port", str(agent_grpc), "--runtime-env-agent-port", str(rt_env),
        "--metrics-export-port", str(metrics), "--temp-dir", temp_dir, "--include-dashboard", "true",
    ]  # fmt: skip
    log = open(Path(temp_dir) / "ray-start.log", "w")  # noqa: SIM115 - closed in teardown
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 120
        while True:
            req = urllib.request.Request(f"{address}/api/jobs/", headers={"Authorization": f"Bearer {token}"})
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"ray start failed: {(Path(temp_dir) / 'ray-start.log').read_text()[-3000:]}"
                )
            time.sleep(1.0)
        yield {"address": address, "env": env, "token": token}
    finally:
        _stop_group(proc, temp_dir)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_submit_ingest_to_a_cluster(ray_cluster, sample_bucket, tmp_path, run_accord) -> None:
    out = tmp_path / "out"
    lst = tmp_path / "two.txt"
    lst.write_text("en_flite_rms.webm\nnoise_only.flac\n")
    proc = run_accord(
        "ingest", str(sample_bucket.path), "--out", str(out), "--list", str(lst),
        "--address", ray_cluster["address"], "--python", sys.executable, "--no-progress",
        env=ray_cluster["env"], timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "submitted Ray job" in proc.stderr and "SUCCEEDED" in proc.stderr
    assert "committed" in proc.stdout + proc.stderr  # the job's own log, streamed back
    assert ray_cluster["token"] not in proc.stdout + proc.stderr
    clips = read_manifest(str(out)).to_pylist()
    assert {Path(c["source_uri"]).name for c in clips} == {"en_flite_rms.webm"}
    assert len(clips) == len(sample_bucket.truth["en_flite_rms.webm"]["sentences"])
    assert len(list((out / "runs").glob("*.json"))) == 1


def test_submit_reports_a_failing_job(ray_cluster, tmp_path, run_accord) -> None:
    proc = run_accord(
        "ingest", str(tmp_path / "missing"), "--out", str(tmp_path / "out"),
        "--address", ray_cluster["address"], "--python", sys.executable, "--no-progress",
        env=ray_cluster["env"], timeout=300,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "FAILED" in proc.stderr
