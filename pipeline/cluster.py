"""Submit an accord command to a Ray cluster through Ray Jobs and stream its logs back.

The entrypoint is the same ``accord`` command minus ``--address``; inside the job,
``ray.init()`` joins the cluster through the ``RAY_ADDRESS`` the job supervisor sets. Token
authentication (Ray >= 2.5x) is handled by Ray's own client from ``RAY_AUTH_MODE`` and
``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH`` / ``~/.ray/auth_token``: we pass none of it on,
never put secrets in the runtime env, and never log them. Cloud credentials stay where they
are: workers use the cluster's own identity (instance roles, workload identity).
"""

from __future__ import annotations

import asyncio
import shlex
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit

from accord.core.storage import redact_uri

DASHBOARD_PORT = 8265

# Harmless settings worth carrying to the job's driver (no secrets: never keys or tokens).
# The S3 endpoint and region say where an S3-compatible store (MinIO, Ceph, R2) is, not how to
# get in: credentials stay with the cluster's own configuration.
PASSTHROUGH_ENV = (
    "ACCORD_CACHE",
    "ACCORD_MODELS",
    "RAY_USAGE_STATS_ENABLED",
    "TOKENIZERS_PARALLELISM",
    "DS_ACCELERATOR",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)


def dashboard_address(address: str) -> str:
    """The Jobs API address: ``http(s)://host:port`` as given, ``ray://host:port`` -> ``http://host:8265``."""
    parts = urlsplit(address if "://" in address else f"http://{address}")
    if parts.scheme in ("http", "https"):
        return address if "://" in address else f"http://{address}"
    if parts.scheme == "ray":
        # Ray Client's port (10001) is not the Jobs API; the dashboard serves it on 8265.
        return f"http://{parts.hostname}:{DASHBOARD_PORT}"
    raise ValueError(
        f"unsupported Ray address {redact_uri(address)!r}: use http://HOST:8265 or ray://HOST:PORT"
    )


def strip_option(argv: list[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` / ``option=VALUE``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == option:
            skip = True
            continue
        if a.startswith(option + "="):
            continue
        out.append(a)
    return out


@dataclass
class SubmitConfig:
    address: str
    python: str = "python"  # the cluster's interpreter with accord installed
    env: dict[str, str] = field(default_factory=dict)  # extra non-secret env vars for the job
    working_dir: str | None = None  # ship local code (dev); production images have accord installed
    pip: list[str] = field(default_factory=list)
    entrypoint_num_cpus: float = 0.0  # the driver only streams rows and writes parts


def build_runtime_env(cfg: SubmitConfig, environ: dict[str, str]) -> dict[str, Any]:
    env = {k: environ[k] for k in PASSTHROUGH_ENV if k in environ}
    env.update(cfg.env)
    runtime_env: dict[str, Any] = {"env_vars": env}
    if cfg.working_dir:
        runtime_env["working_dir"] = cfg.working_dir
    if cfg.pip:
        runtime_env["pip"] = list(cfg.pip)
    return runtime_env


async def _tail(client: Any, job_id: str, out: TextIO) -> None:
    async for chunk in client.tail_job_logs(job_id):
        out.write(chunk)
        out.flush()


def submit(args: list[str], cfg: SubmitConfig, out: TextIO | None = None, wait: bool = True) -> int:
    """Submit ``accord <args>`` as a Ray job; stream logs; exit code from the final job status."""
    import os

    from ray.job_submission import JobStatus, JobSubmissionClient

    out = out or sys.stdout
    address = dashboard_address(cfg.address)
    client = JobSubmissionClient(address)
    entrypoint = " ".join(shlex.quote(a) for a in [cfg.python, "-m", "accord.cli.main", *args])
    submission_id = f"accord-{args[0] if args else 'job'}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    job_id = client.submit_job(
        entrypoint=entrypoint,
        submission_id=submission_id,
        runtime_env=build_runtime_env(cfg, dict(os.environ)),
        entrypoint_num_cpus=cfg.entrypoint_num_cpus,
        metadata={"tool": "accord"},
    )
    print(f"submitted Ray job {job_id} to {redact_uri(address)}", file=sys.stderr, flush=True)
    if not wait:
        return 0
    try:
        asyncio.run(_tail(client, job_id, out))
    except Exception as e:  # log streaming is best effort; the status below is the truth
        print(f"(log streaming stopped: {type(e).__name__}; polling the job status)", file=sys.stderr)
    terminal = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
    while (status := client.get_job_status(job_id)) not in terminal:
        time.sleep(1.0)
    info = client.get_job_info(job_id)
    print(
        f"Ray job {job_id}: {status.value}" + (f" ({info.message})" if info.message else ""), file=sys.stderr
    )
    if status == JobStatus.SUCCEEDED:
        return 0
    return 130 if status == JobStatus.STOPPED else (info.driver_exit_code or 1)
