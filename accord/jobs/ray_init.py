"""Start or join Ray for a job: a cluster when one is named, else a local one sized to the machine,
whose processes end with this one (:mod:`accord.jobs.tether`)."""

from __future__ import annotations

import logging
import os
from typing import Any

from accord.jobs.tether import children, tether


def init_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``, which Ray Jobs sets inside a job),
    else start a local Ray with ``num_cpus`` (None: every core of this machine).

    Returns True when this call started or joined Ray (and the caller should shut it down);
    False when this process was already connected. A local Ray is tethered to this process: its
    processes are killed when it dies, ``kill -9`` included.
    """
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, **kwargs)  # num_cpus is the cluster's, not ours to set
    else:
        before = children(os.getpid())
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, **kwargs)
        tether(children(os.getpid()) - before)
    return True
