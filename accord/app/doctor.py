"""What this machine can run: versions, devices, offline models, Ray reachability.

Library half of ``accord doctor``. Versions come from package metadata so that nothing
heavy (NeMo takes ~20 s to import) is imported just to report a version.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib import metadata
from urllib.parse import urlparse

from accord.core.weights import Availability, availability

PACKAGES = (
    "accord",
    "torch",
    "torchaudio",
    "ray",
    "deepspeed",
    "nemo-toolkit",
    "faster-whisper",
    "ctranslate2",
    "silero-vad",
    "moonshine-voice",
    "speechbrain",
    "descript-audio-codec",
    "webdataset",
    "flash-attn",
)


@dataclass
class Report:
    python: str
    platform: str
    versions: dict[str, str | None]
    devices: dict[str, object]
    models: list[Availability]
    ray: dict[str, object] = field(default_factory=dict)


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def devices() -> dict[str, object]:
    info: dict[str, object] = {"cpu_count": os.cpu_count()}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.is_available()
        info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["bf16"] = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    except Exception as e:  # torch missing or broken: report, don't crash the doctor
        info["torch_error"] = f"{type(e).__name__}: {e}"
    return info


def check_ray(address: str | None, timeout_s: float = 3.0) -> dict[str, object]:
    """Is the Ray address reachable? HTTP addresses are the Jobs API (dashboard port)."""
    address = address or os.environ.get("RAY_ADDRESS")
    if not address or address == "auto":
        return {"address": address, "reachable": None, "note": "no address: embedded local Ray will be used"}
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if parsed.scheme in {"http", "https"}:
        url = f"{parsed.scheme}://{parsed.netloc}/api/version"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as r:
                return {"address": address, "reachable": True, "note": r.read(200).decode(errors="replace")}
        except urllib.error.HTTPError as e:
            # 401/403: the Jobs endpoint is up and wants authentication (token auth on).
            return {
                "address": address,
                "reachable": True,
                "note": f"HTTP {e.code} (authentication required?)",
            }
        except Exception as e:
            return {"address": address, "reachable": False, "note": f"{type(e).__name__}: {e}"}
    host, port = parsed.hostname or "127.0.0.1", parsed.port or (10001 if parsed.scheme == "ray" else 6379)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return {"address": address, "reachable": True, "note": f"tcp {host}:{port} open"}
    except OSError as e:
        return {"address": address, "reachable": False, "note": f"tcp {host}:{port}: {e}"}


def run(address: str | None = None) -> Report:
    return Report(
        python=sys.version.split()[0],
        platform=platform.platform(),
        versions=package_versions(),
        devices=devices(),
        models=availability(),
        ray=check_ray(address),
    )
