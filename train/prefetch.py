"""Run a producer ahead of the training thread: a background thread fills a bounded queue.

The producer is any iterator (the loader's micro-batch stream: shard reads, decoding, packing,
collation). The consumer gets its items in order; while the queue is non-empty it never waits
for I/O. The thread ends when the producer ends or raises (the exception is re-raised in the
consumer, with its traceback, at the item where it happened), when :meth:`Prefetcher.close` is
called, and at interpreter exit (the thread is a daemon and checks a stop flag at every put).
The thread holds no reference to the object that owns the prefetcher, so an owner dropped
without ``close`` is collected and its finalizer stops the thread.
"""

from __future__ import annotations

import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_END = object()


class _Raised:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Prefetcher(Generic[T]):
    """``next(prefetcher)``: the producer's next item, produced ahead by up to ``depth`` items.

    ``wait_s`` accumulates the time the consumer spent blocked on an empty queue. ``size``
    (optional) gives an item's size in bytes, added to ``held`` (a :class:`Gauge`, shared with
    the producer's own buffers when given) while the item is queued.
    """

    def __init__(
        self,
        items: Iterator[T],
        depth: int,
        size: Callable[[T], int] | None = None,
        gauge: Gauge | None = None,
        name: str = "prefetch",
    ) -> None:
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.size = size
        self.held = gauge if gauge is not None else Gauge()
        self.wait_s = 0.0
        self.done = False
        self.thread = threading.Thread(
            target=_produce, args=(items, self.queue, self.stop, self.held, size), name=name, daemon=True
        )
        self.thread.start()

    def __iter__(self) -> Prefetcher[T]:
        return self

    def __next__(self) -> T:
        if self.done:
            raise StopIteration
        t0 = time.perf_counter()
        item = self.queue.get()
        self.wait_s += time.perf_counter() - t0
        if item is _END:
            self.done = True
            raise StopIteration
        if isinstance(item, _Raised):
            self.done = True
            raise item.error
        if self.size is not None:
            self.held.add(-self.size(item))
        return item

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread and drop what it queued (idempotent)."""
        self.stop.set()
        self.done = True
        while True:  # unblock a put in progress
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(timeout)

    def finalize_with(self, owner: object) -> None:
        """Close this prefetcher when ``owner`` is collected or the interpreter exits."""
        weakref.finalize(owner, self.close, 1.0)


class Gauge:
    """Bytes held (thread-safe), with its peak."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def add(self, n: int) -> None:
        with self.lock:
            self.now += n
            self.peak = max(self.peak, self.now)


def _put(q: queue.Queue[Any], stop: threading.Event, item: Any) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _produce(
    items: Iterator[Any],
    q: queue.Queue[Any],
    stop: threading.Event,
    held: Gauge,
    size: Callable[[Any], int] | None,
) -> None:
    try:
        for item in items:
            if size is not None:
                held.add(size(item))
            if not _put(q, stop, item):
                return
        _put(q, stop, _END)
    except BaseException as e:  # surfaced in the consumer
        _put(q, stop, _Raised(e))
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()
