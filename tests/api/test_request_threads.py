"""gunicorn's request threads for dynvm (`dynvm.runtime.threads`): a waiting request lends
its place, so a fixed number of threads never all sit in long waits."""

from __future__ import annotations

import threading

from dynvm.runtime.threads import RequestThreads
from testbed.serving import wait_until


def test_a_waiting_request_lends_its_place_and_surplus_threads_end() -> None:
    pool = RequestThreads(1)
    release = threading.Event()
    entered = threading.Event()

    def waits() -> str:
        with pool.waiting():
            entered.set()
            release.wait()
        return "built"

    slow = pool.submit(waits)
    assert entered.wait(30)
    # The one working place is free again: a read runs although a request is busy.
    assert pool.submit(lambda: "read").result(timeout=30) == "read"
    assert pool.submit(lambda: "another read").result(timeout=30) == "another read"
    assert pool.lent == 1 and pool.alive == 2
    release.set()
    assert slow.result(timeout=30) == "built"
    wait_until(lambda: pool.alive == 1, timeout=30, what="the surplus thread to end")
    assert pool.lent == 0
    pool.shutdown(wait=True)
    assert pool.alive == 0


def test_without_waiting_requests_queue_behind_the_working_places() -> None:
    pool = RequestThreads(1)
    release = threading.Event()
    started = threading.Event()

    def busy() -> str:
        started.set()
        release.wait()
        return "done"

    first = pool.submit(busy)
    assert started.wait(30)
    second = pool.submit(lambda: "second")
    assert not second.done()  # one place, held by a request that is working, not waiting
    release.set()
    assert first.result(timeout=30) == "done" and second.result(timeout=30) == "second"
    pool.shutdown(wait=True)


def test_a_wait_outside_the_pools_threads_changes_nothing() -> None:
    pool = RequestThreads(1)
    with pool.waiting():  # the test's own thread is not one of the pool's
        release = threading.Event()
        started = threading.Event()

        def busy() -> None:
            started.set()
            release.wait()

        first = pool.submit(busy)
        assert started.wait(30)
        second = pool.submit(lambda: None)
        assert not second.done()
        release.set()
        first.result(timeout=30)
        second.result(timeout=30)
    pool.shutdown(wait=True)


def test_an_exception_reaches_the_future() -> None:
    pool = RequestThreads(2)

    def boom() -> None:
        raise ValueError("bad")

    fut = pool.submit(boom)
    assert isinstance(fut.exception(timeout=30), ValueError)
    pool.shutdown(wait=True)
