"""A stand-in for the service layer that records every call.

It lets the HTTP layer's own behaviour (validation, formatting, status codes)
be tested without a farm; everything that touches Xen is tested end to end
against the simulator in test_e2e.py. It plays the subjects the legacy routes,
the access check and /health use (`legacy`, `access`, `health`) itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dynvm.config import AuthConfig
from dynvm.core.callers import Caller
from dynvm.core.errors import NotFound
from dynvm.core.services import (
    Available,
    ServerResult,
    ServersRequest,
    ServersResult,
    ShowAll,
    Target,
)


@dataclass
class StubCore:
    oses: set[str] = field(default_factory=lambda: {"centos", "windows"})
    refs: set[int] = field(default_factory=lambda: {1, 2})
    calls: list[tuple[str, Any]] = field(default_factory=list)
    showall: ShowAll = field(default_factory=lambda: ShowAll(hosts={}, unreachable=[], age_secs=0.0))
    available_count: int = 7
    label_counts: list[dict] = field(default_factory=list)
    ip_base: str = "10.0.0."
    raise_on_get: Exception | None = None
    failed: list[tuple[str, str]] = field(default_factory=list)
    existing: set[str] = field(default_factory=set)
    health_report: dict = field(default_factory=lambda: {"status": "ok"})

    def __post_init__(self) -> None:
        self.legacy = self.access = self.health = self

    def core_calls(self) -> list[str]:
        """Calls that would reach past the config (os_keys/host_refs are config look-ups)."""
        return [name for name, _ in self.calls if name not in ("os_keys", "host_refs")]

    def os_keys(self) -> set[str]:
        self.calls.append(("os_keys", None))
        return set(self.oses)

    def host_refs(self) -> set[int]:
        self.calls.append(("host_refs", None))
        return set(self.refs)

    def show_all(self, os: str | None, labels: frozenset[str], ignore_labels: bool) -> ShowAll:
        self.calls.append(("show_all", (os, labels, ignore_labels)))
        return self.showall

    def available(self, os: str, labels: frozenset[str], ignore_labels: bool) -> Available:
        self.calls.append(("available", (os, labels, ignore_labels)))
        return Available(count=self.available_count, unreachable=[2], age_secs=1.25)

    def available_by_label(self, os: str) -> list[dict]:
        self.calls.append(("available_by_label", os))
        return self.label_counts

    def get_servers(self, req: ServersRequest) -> ServersResult:
        self.calls.append(("get_servers", req))
        if self.raise_on_get is not None:
            raise self.raise_on_get
        names = [req.name] if req.count == 1 else [f"{req.name}{i}" for i in range(1, req.count + 1)]
        failed_names = {n for n, _ in self.failed}
        servers = [
            ServerResult(name=n, ip=f"{self.ip_base}{i}", host_ref=1, vm_uuid=f"uuid-{n}")
            for i, n in enumerate(names, start=1) if n not in failed_names
        ]
        self.existing.update(s.name for s in servers)
        return ServersResult(servers=servers, failed=list(self.failed))

    def _names(self, target: Target) -> list[str]:
        """The existing VMs meant; none raises NotFound, as the real core does."""
        found = sorted((n for n in self.existing if target.covers(n)), key=lambda n: (len(n), n))
        if not found:
            raise NotFound(f"Error: VM {target.said} doesn't exist")
        return found

    def release_servers(self, target: Target, state: str | None,
                        caller: Caller | None = None) -> list[str]:
        self.calls.append(("release_servers", (target, state)))
        gone = self._names(target)
        self.existing.difference_update(gone)
        return gone

    def set_expiry(self, target: Target, minutes: int, from_created: bool,
                   caller: Caller | None = None) -> list[str]:
        self.calls.append(("set_expiry", (target, minutes, from_created)))
        return self._names(target)

    def settings(self) -> AuthConfig:
        return AuthConfig()  # legacy=open: the HTTP layer's own tests need no token

    def caller_for(self, secret: str) -> Caller | None:
        return None

    def report(self) -> dict:
        self.calls.append(("health", None))
        return self.health_report

    def close(self) -> None:
        self.calls.append(("close", None))
