"""One rule for every health answer: what is checked, when it is degraded, and why.

`/health`, `/health/ready` and anything else that reports health take their
verdict from here, so they cannot disagree. Each check is one thing an
operator can act on (the configuration, the store, one pool, one maintenance
run); a failing check carries its reason in words, and the reasons come first
in every answer.

- **Degraded** (`/health` 503): the configuration was refused, the store
  cannot be read *and written*, any configured pool does not answer, or a
  rolling reboot stopped (interrupted or failed) with its pool's HA still off.
- **Not ready** (`/health/ready` 503, take the instance out of the balancer):
  the configuration was refused, the store cannot be read and written, or no
  configured pool answers. A pool down among others, or a maintenance run left
  half done, leaves the instance able to serve: it stays ready.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dynvm.core.lifecycle import STOPPED_RUNS, RunState

CONFIG, STORE, POOL, MAINTENANCE = "config", "store", "pool", "maintenance"


@dataclass(frozen=True)
class Check:
    """One health check: `kind` (config, store, pool, maintenance), its verdict and why."""

    kind: str
    name: str  # "config", "store", "xenhost1", "maintenance of xenhost1"
    ok: bool
    reason: str = ""  # why it fails, in words; empty when ok
    detail: dict[str, Any] = field(default_factory=dict)


def config_check(error: str | None) -> Check:
    if error:
        return Check(CONFIG, CONFIG, False, f"the configuration was refused: {error}",
                     {"error": error})
    return Check(CONFIG, CONFIG, True)


def store_check(probe: dict[str, Any]) -> Check:
    """From `StoreProbe.check()`: readable and writable within its time bound."""
    if probe.get("ok"):
        return Check(STORE, STORE, True, detail=dict(probe))
    return Check(STORE, STORE, False,
                 f"the state store cannot be read and written: {probe.get('error', '?')}",
                 dict(probe))


def pool_check(ref: int, name: str, error: str | None,
               detail: dict[str, Any] | None = None) -> Check:
    if error is not None:
        return Check(POOL, f"xenhost{ref}", False,
                     f"xenhost{ref} ({name}) does not answer: {error}", detail or {})
    return Check(POOL, f"xenhost{ref}", True, detail=detail or {})


def maintenance_check(ref: int, run: dict[str, Any]) -> Check:
    """A rolling reboot that stopped with pool HA off leaves the pool unprotected."""
    name = f"maintenance of xenhost{ref}"
    if run.get("ha_off") and run.get("state") in STOPPED_RUNS:
        return Check(MAINTENANCE, name, False,
                     f"pool HA of xenhost{ref} is OFF after a rolling reboot that "
                     f"{'was interrupted' if run['state'] == RunState.INTERRUPTED else 'failed'}: "
                     f"run `dynvm maintenance reboot {ref} --exec` again to resume "
                     f"(HA is turned back on at the end)", run)
    return Check(MAINTENANCE, name, True, detail=run)


@dataclass(frozen=True)
class Verdict:
    """The checks and what they add up to."""

    checks: tuple[Check, ...]

    @classmethod
    def of(cls, checks: Iterable[Check]) -> Verdict:
        return cls(tuple(checks))

    @property
    def reasons(self) -> list[str]:
        """Why it is degraded, in the order of the checks (empty when healthy)."""
        return [c.reason for c in self.checks if not c.ok]

    @property
    def status(self) -> str:
        return "degraded" if self.reasons else "ok"

    @property
    def not_ready(self) -> list[str]:
        """Why this instance should get no traffic (empty when it can serve)."""
        out = [c.reason for c in self.checks if not c.ok and c.kind in (CONFIG, STORE)]
        pools = [c for c in self.checks if c.kind == POOL]
        if not any(c.ok for c in pools):
            out.append("no configured pool answers" if pools else "no pool is configured")
        return out
