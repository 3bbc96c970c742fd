"""Faults injected on demand (by tests or the control endpoint) and call counts."""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class FailRule:
    """Fail the next `count` calls of `method` (on `host`, or anywhere) with `code`."""

    method: str
    count: int
    code: str
    params: list[str]
    host: str | None = None


@dataclass
class Hold:
    """Every call of `method` (anywhere) waits in the simulator until `release()`.

    A test catches a client at a known step of its work this way (and sees
    it there as long as it likes) instead of timing a slow one. `reached` is
    set when the first such call arrives.
    """

    method: str
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()


def canonical(method: str) -> str:
    """`Async.VM.start` / `VM_start` style names compare as their dotted form."""
    if method.startswith("Async."):
        method = method[6:]
    return method


class Faults:
    """Thread-safe fault switches and per-host, per-wire-method call counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.slow: dict[str, float] = {}
        self.dhcp_exhausted: set[str] = set()
        self._rules: list[FailRule] = []
        self._holds: list[Hold] = []
        self._counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    # counts
    def count(self, host: str, method: str) -> None:
        with self._lock:
            self._counts[host][method] += 1

    def counts(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {h: dict(m) for h, m in self._counts.items()}

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()

    # fail_next
    def add_rule(self, rule: FailRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def take_failure(self, host: str, method: str, resolved: str) -> list[str] | None:
        """The error to answer instead of running the call, consuming one count."""
        if not self._rules:
            return None
        names = {method, canonical(method), resolved}
        with self._lock:
            for rule in self._rules:
                if rule.count <= 0 or (rule.host and rule.host != host):
                    continue
                if rule.method in names or canonical(rule.method) in names:
                    rule.count -= 1
                    self._rules = [r for r in self._rules if r.count > 0]
                    return [rule.code, *rule.params]
        return None

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()
            holds, self._holds = self._holds, []
        for hold in holds:  # nothing may wait for a hold nobody can release any more
            hold.release()

    # holds
    def add_hold(self, hold: Hold) -> None:
        with self._lock:
            self._holds.append(hold)

    def wait_held(self, method: str, resolved: str) -> None:
        """Wait while a hold names this call (`method` as called, `resolved` as dispatched)."""
        if not self._holds:
            return
        names = {method, canonical(method), resolved}
        with self._lock:
            self._holds = [h for h in self._holds if not h.released.is_set()]
            holds = [h for h in self._holds if canonical(h.method) in names]
        for hold in holds:
            hold.reached.set()
            hold.released.wait()


class UnknownName(LookupError):
    """A fault named a host or pool the farm does not have."""
