"""A real S3 endpoint for the object-store tests: moto's server on a free localhost port.

moto lives in its own virtualenv (``.venv-moto``, made by ``scripts/setup.sh``) so its pins never
touch accord's lock. Clients reach it the way a user reaches any S3-compatible store: botocore's
``AWS_ENDPOINT_URL`` (s3fs and pyarrow both honour it) plus credentials in the environment, which
an embedded Ray's workers inherit from the driver. A missing venv FAILS the tests: CI runs setup
first, so a silent skip would hide a broken setup.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MOTO_SERVER = ROOT / ".venv-moto" / "bin" / "moto_server"
SETUP_COMMAND = "make setup (or: bash scripts/setup.sh)"
START_TIMEOUT_S = 30.0


@dataclass
class S3Server:
    """A running moto server: ``endpoint`` and the environment a client needs to use it."""

    endpoint: str
    env: dict[str, str]

    def fs(self):
        """A fresh s3fs filesystem on this endpoint (no listing cache shared with other clients)."""
        import s3fs

        return s3fs.S3FileSystem(
            key=self.env["AWS_ACCESS_KEY_ID"],
            secret=self.env["AWS_SECRET_ACCESS_KEY"],
            endpoint_url=self.endpoint,
            skip_instance_cache=True,
            use_listings_cache=False,
        )

    def make_bucket(self, name: str) -> str:
        """Create bucket ``name`` (empty); its ``s3://`` URI."""
        self.fs().mkdir(name)
        return f"s3://{name}"


def client_env(endpoint: str, home: Path) -> dict[str, str]:
    """What points any AWS client at ``endpoint``: no profile, config file or instance metadata
    of the developer's machine can redirect it."""
    no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY", ""), "127.0.0.1", "localhost"]))
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "accord-test",
        "AWS_SECRET_ACCESS_KEY": "accord-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
    }


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """``env`` set in this process (AWS_PROFILE and a session token unset), restored after."""
    drop = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3")
    saved = {k: os.environ.get(k) for k in (*env, *drop)}
    for k in drop:
        os.environ.pop(k, None)
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        forget_s3_clients()


def forget_s3_clients() -> None:
    """Drop fsspec's cached s3 filesystems, and with them their listing caches: another process
    (the ingest) wrote to the bucket since they listed it."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(proc: subprocess.Popen, endpoint: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # localhost: never a proxy
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with direct.open(f"{endpoint}/moto-api/", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto_server not answering at {endpoint} after {START_TIMEOUT_S} s")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory) -> Iterator[S3Server]:
    """moto's S3 server on a free 127.0.0.1 port for the session, stopped at its end."""
    if not os.access(MOTO_SERVER, os.X_OK):
        pytest.fail(
            f"{MOTO_SERVER.relative_to(ROOT)} is missing: the S3 tests run moto from its own venv. "
            f"Create it with `{SETUP_COMMAND}`.",
            pytrace=False,
        )
    home = tmp_path_factory.mktemp("moto")
    no_proxy = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    for attempt in range(3):  # the free port can be taken between choosing and binding it
        endpoint = f"http://127.0.0.1:{_free_port()}"
        log = home / f"moto-{attempt}.log"
        port = endpoint.rsplit(":", 1)[1]
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", port],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **no_proxy},
            )
        try:
            _wait_ready(proc, endpoint, log)
            break
        except RuntimeError:
            _stop(proc)
            if attempt == 2:
                raise
    try:
        yield S3Server(endpoint, client_env(endpoint, home))
    finally:
        _stop(proc)
