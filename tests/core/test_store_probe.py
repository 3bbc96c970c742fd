"""The store probe answers within its timeout, however many checks join a hung probe."""

from __future__ import annotations

import threading
from typing import Any, cast

from dynvm.core.store import Store
from dynvm.core.store_probe import StoreProbe
from testbed.serving import wait_until
from tests.support.clock import SteppedClock


class HungStore:
    """A store whose ping waits until released (a held lock, a stalled disk)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def ping(self) -> None:
        self.release.wait(60)

    def ping_write(self) -> None:
        pass


class CountingClock(SteppedClock):
    """Records how long each wait was asked to last, and lets that time pass at once."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[float] = []

    def wait(self, event: threading.Event, secs: float) -> bool:
        self.asked.append(secs)
        if secs > 0:
            self.advance(secs)
        return event.is_set()


def test_a_check_joining_a_hung_probe_waits_only_what_is_left_of_its_deadline() -> None:
    store, clock = HungStore(), CountingClock()
    probe = StoreProbe(cast(Store, store), timeout=1.5, clock=clock)
    try:
        first: dict[str, Any] = probe.check()
        assert first["ok"] is False and "did not answer" in first["error"], first
        again = probe.check()  # the same probe, still hung: its deadline is past
        assert again["ok"] is False, again
        assert 0 < clock.asked[0] <= 1.5 and clock.asked[1] <= 0.0, clock.asked
    finally:
        store.release.set()
    wait_until(lambda: probe.check() == {"ok": True}, timeout=30,
               what="a fresh probe to pass once the store answers")
