"""A local Ray's processes end with the driver that started them, even on ``kill -9``.

``ray.init`` starts the GCS and the raylet as the driver's children, and they die with it. The
raylet's agents (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) only notice that the raylet
is gone, then try to report it to the GCS, which is gone too, for the report's 60 s timeout:
after a SIGKILL of the driver they outlived it by 60-75 s (Ray 2.60).

The tether is a small process that reads a pipe whose write end only the driver holds. The
kernel closes it however the driver ends, so EOF means "driver gone": the tether then kills
every process of that Ray session it has seen (it notes the session's process tree every
``POLL_S``, because the agents lose their parent with the raylet). It exits by itself once the
session has ended normally (``ray.shutdown``). Linux only (``/proc``); elsewhere a no-op. A
child the driver forks without exec holds the pipe too: the tether then fires when that child ends.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

POLL_S = 1.0  # how often the tether notes the session's processes (one read of /proc)
PROC = Path("/proc")

Ident = tuple[int, int]  # (pid, start time in clock ticks): a pid the kernel may have reused is not ours

_TETHERS: list[subprocess.Popen] = []  # held for the driver's lifetime: closing one's pipe fires it


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of ``pid``, or None once it has ended (a zombie included)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": the comm may hold spaces
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[19])


def _table() -> dict[int, tuple[int, int]]:
    """Every live process: pid -> (parent pid, start time); empty without ``/proc``."""
    table: dict[int, tuple[int, int]] = {}
    if not PROC.is_dir():
        return table
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            table[int(entry.name)] = st
    return table


def children(pid: int) -> set[Ident]:
    """The live child processes of ``pid``."""
    return {(p, start) for p, (ppid, start) in _table().items() if ppid == pid}


def tree(roots: set[Ident]) -> set[Ident]:
    """``roots`` that still live and all their live descendants."""
    table = _table()
    kids: dict[int, list[int]] = {}
    for p, (ppid, _) in table.items():
        kids.setdefault(ppid, []).append(p)
    found = {p for p, start in roots if table.get(p, (0, -1))[1] == start}
    todo = list(found)
    while todo:
        new = [k for k in kids.get(todo.pop(), []) if k not in found]
        found.update(new)
        todo += new
    return {(p, table[p][1]) for p in found}


def _kill(seen: set[Ident]) -> None:
    for pid, start in seen:
        st = _stat(pid)
        if st is not None and st[1] == start:
            with contextlib.suppress(OSError):  # gone since
                os.kill(pid, signal.SIGKILL)


def watch(roots: set[Ident], pipe_fd: int = 0) -> None:
    """The tether's loop: note the tree under ``roots``; on EOF of ``pipe_fd`` kill what was noted."""
    seen = set(roots)
    while True:
        live = tree(seen)
        if not live:
            return  # the session ended while the driver lived: nothing left to guard
        seen |= live
        ready, _, _ = select.select([pipe_fd], [], [], POLL_S)
        if ready and not os.read(pipe_fd, 64):
            _kill(seen | tree(seen))
            return


def tether(roots: set[Ident]) -> None:
    """Start a tether for the processes ``roots`` (a Ray session this process just started)."""
    # The tree as it is now, not as the tether finds it once started: a driver killed before
    # that has taken the raylet with it, and the agents it started no longer descend from it.
    roots = tree(roots)
    if not roots:
        return
    _TETHERS[:] = [t for t in _TETHERS if t.poll() is None]  # reap those whose session ended
    args = [f"{pid}:{start}" for pid, start in sorted(roots)]
    # This file as a script in isolated mode: standard library only, whatever the driver's path.
    # Its own session: a Ctrl-C in the terminal must leave it to see the driver's cleanup through.
    proc = subprocess.Popen(
        [sys.executable, "-I", str(Path(__file__).resolve()), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,  # never holds a pipe its driver's reader waits on
        start_new_session=True,
    )
    _TETHERS.append(proc)


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    roots = {(int(p), int(s)) for p, s in (a.split(":") for a in argv)}
    watch(roots)


if __name__ == "__main__":
    main(sys.argv[1:])
