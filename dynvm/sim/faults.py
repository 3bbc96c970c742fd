"""Faults injected on demand (by tests or the control endpoint) and call counts."""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass


@dataclass
class FailRule:
    """Fail the next `count` calls of `method` (on `host`, or anywhere) with `code`."""

    method: str
    count: int
    code: str
    params: list[str]
    host: str | None = None


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


class UnknownName(LookupError):
    """A fault named a host or pool the farm does not have."""
