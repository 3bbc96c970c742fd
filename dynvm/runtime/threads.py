"""gunicorn's request threads for dynvm: a request that waits does not hold a place reads need.

gthread serves each request on a thread of a fixed pool (`--threads`). A
legacy `getservers` holds its thread until its VMs are up (minutes), a v1
long poll for up to two minutes: with the pool full of those, `/showall` and
`/getavailablecount` queue behind them however cheap they are. This pool runs
at most `threads` requests that are *working*; a request that says it is
waiting (`waiting()`, around the core's long waits) lends its place, so a new
thread takes the next request at once, and the surplus threads end once idle.
However many callers wait for VMs, reads find a thread.

`DynvmWorker` is gthread with this pool; `dynvm serve` runs it. The core
reaches `waiting` through the hook the bootstrap hands it (a no-op outside
gunicorn, e.g. in tests that call the app in-process).
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

_pool: RequestThreads | None = None  # this worker process's pool, once gunicorn made it


class RequestThreads:
    """A thread pool of `threads` working places; waiting requests do not count."""

    def __init__(self, threads: int) -> None:
        self._limit = max(threads, 1)
        # Over an RLock: gunicorn's quick stop calls `shutdown` from a signal handler,
        # possibly on the thread that holds it in `submit`.
        self._cond = threading.Condition(threading.RLock())
        self._work: deque[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = deque()
        self._threads = 0  # alive
        self._busy = 0  # running a request (waiting ones included)
        self._waiting = 0
        self._stopped = False
        self._local = threading.local()  # `mine`: a thread of this pool; `depth` of waits

    @property
    def alive(self) -> int:
        """Threads the pool has now (more than `threads` only while requests wait)."""
        with self._cond:
            return self._threads

    @property
    def lent(self) -> int:
        """Requests running now that have lent their place (they wait)."""
        with self._cond:
            return self._waiting

    @property
    def _room(self) -> int:
        """Requests that may run at once: the working places, plus one per waiting request."""
        return self._limit + self._waiting

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        with self._cond:
            if self._stopped:
                raise RuntimeError("the request threads are shut down")
            self._work.append((fut, fn, args))
            self._grow()
            self._cond.notify()
        return fut

    def _grow(self) -> None:
        """Start threads for queued requests that may run now (called holding the lock)."""
        idle = self._threads - self._busy
        want = min(len(self._work), self._room - self._busy) - idle
        for _ in range(max(0, min(want, self._room - self._threads))):
            self._threads += 1
            threading.Thread(target=self._serve, name="dynvm-http", daemon=True).start()

    def _serve(self) -> None:
        self._local.mine = True
        while True:
            with self._cond:
                while not (self._work and self._busy < self._room):
                    # Stopped, or a surplus thread (lent places given back) that is idle.
                    if (self._stopped and not self._work) or (
                            self._threads > self._room and self._threads > self._busy):
                        self._threads -= 1
                        self._cond.notify_all()  # `shutdown` waits for the count
                        return
                    self._cond.wait()
                fut, fn, args = self._work.popleft()
                self._busy += 1
            try:
                if fut.set_running_or_notify_cancel():
                    try:
                        result = fn(*args)
                    except BaseException as exc:
                        fut.set_exception(exc)
                    else:
                        fut.set_result(result)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify()

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """While the calling request waits, it does not count against the working places
        (a thread that is not one of the pool's, or a wait within a wait, changes nothing)."""
        if not getattr(self._local, "mine", False):
            yield
            return
        depth = getattr(self._local, "depth", 0)
        self._local.depth = depth + 1
        if depth == 0:
            with self._cond:
                self._waiting += 1
                self._grow()
                self._cond.notify_all()
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                with self._cond:
                    self._waiting -= 1
                    self._cond.notify_all()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._cond:
            self._stopped = True
            if cancel_futures:
                while self._work:
                    self._work.popleft()[0].cancel()
            self._cond.notify_all()
        if wait:
            with self._cond:
                while self._threads:
                    self._cond.wait()


def waiting() -> contextlib.AbstractContextManager[None]:
    """The hook the core calls around a long wait: lends the request's place, if it holds
    one of gunicorn's request threads."""
    pool = _pool
    return pool.waiting() if pool is not None else contextlib.nullcontext()


class DynvmWorker(ThreadWorker):
    """gunicorn's gthread worker with `RequestThreads` as its pool."""

    def get_thread_pool(self) -> Any:
        global _pool
        _pool = RequestThreads(self.cfg.threads)
        return _pool
