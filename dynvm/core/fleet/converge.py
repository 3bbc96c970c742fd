"""The background leader's fleet duty: what is declared keeps running.

Each pass (under the store's `fleet` lock, skipped while an apply holds it):

- a fleet VM found halted whose file says `autostart=true` is started, on a
  member with room, apart from its group, where its disks are. Each start is
  recorded in its store record; if it is found halted again, it is started
  again only after a back-off (30 s, doubling, at most an hour), and after
  `FAILING_AFTER` starts it is reported as failing, with the last error;
- a fleet VM found running twice (a copy carries its tags) is stopped but
  for the one its store record names (never destroyed: reported);
- a fleet VM built once and now gone is reported, and built again only when
  its file says `recreate=true`, claimed in the store (so once);
- a fleet VM whose file was moved to another pool's folder is moved there with
  its disks (XAPI's cross-pool migration) once it has been declared there for
  `MOVE_AFTER_SECS` (an operator's `apply --exec` goes first, with progress);
  a move that fails leaves it where it was, and is tried again after a back-off
  (reported when it keeps failing); its later steps wait for it;
- VMs declared and never built, VMs whose file was removed, same-named VMs
  dynvm did not make: reported (once each), never acted on: that is apply's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from dynvm.config import ConfigError, load_fleet
from dynvm.core.context import Context
from dynvm.core.fleet.act import StepFailed, Steps
from dynvm.core.fleet.apply import FLEET_LOCK, LOCK_TTL_SECS, adopt_unrecorded
from dynvm.core.fleet.observe import PortOf, observe
from dynvm.core.fleet.plan import Action, Drift, Kind, plan_fleet
from dynvm.core.heldlock import HeldLock

log = logging.getLogger("dynvm.fleet")

BACKOFF_SECS = 30.0
BACKOFF_MAX_SECS = 3600.0
FAILING_AFTER = 3  # starts of a VM that keeps halting (or refusing to start): reported
STABLE_SECS = 300.0  # running this long after a start: its starts are forgotten
MOVE_AFTER_SECS = 300.0  # declared in another pool's folder this long: the leader moves it


def backoff(attempts: int) -> float:
    return min(BACKOFF_SECS * 2 ** max(attempts - 1, 0), BACKOFF_MAX_SECS)


@dataclass
class Converger:
    """One per background worker; remembers what it has reported, to say it once."""

    ctx: Context
    port_of: PortOf
    said: set[str] = field(default_factory=set)

    def _say(self, what: str, level: int = logging.WARNING) -> None:
        if what not in self.said:
            self.said.add(what)
            log.log(level, "fleet: %s", what)

    def run(self) -> dict[str, int]:
        """One pass; counts of what was done."""
        ctx = self.ctx
        try:
            fleet = load_fleet(ctx.config())
        except ConfigError as exc:
            self._say(f"the fleet directory is refused, nothing is kept converged: {exc}",
                      logging.ERROR)
            return {"refused": 1}
        if fleet is None:
            return {}
        lock = HeldLock(ctx.store, FLEET_LOCK, f"{ctx.instance}:converge", LOCK_TTL_SECS,
                        ctx.clock)
        if not lock.acquire():
            return {"busy": 1}  # an apply (or another leader, a moment ago) holds the fleet
        try:
            farm = observe(ctx, fleet, self.port_of, details=False)
            adopt_unrecorded(ctx, farm)
            plan = plan_fleet(fleet, farm)
            steps = Steps(ctx, self.port_of, lock.holder)
            stats = {"started": 0, "stopped": 0, "recreated": 0, "moved": 0, "failed": 0}
            waiting: set[str] = set()  # VMs whose move is not done: their later steps wait
            for action in plan.actions:
                if action.name in waiting:
                    continue
                if action.kind == Kind.MIGRATE and action.to_pool is not None:
                    if not self._move(steps, action, stats):
                        waiting.add(action.name)
                elif action.kind == Kind.STOP:  # a second running copy: the guest runs once
                    self._do(steps, action, stats, "stopped",
                             f"the second copy of {action.name} could not be stopped")
                elif action.kind == Kind.START:
                    self._start(steps, action, stats)
                elif action.kind == Kind.CREATE and action.vm_uuid and action.declared \
                        and action.declared.recreate:
                    self._recreate(steps, action, stats)
            for finding in plan.findings:
                if finding.state not in (Drift.OK, Drift.BUILDING):
                    self._say(f"{finding.name}: {finding.state.value}: {finding.why}")
            self._forget_starts(farm.seen)
            self._forget_moves({a.name for a in plan.actions
                                if a.kind == Kind.MIGRATE and a.to_pool is not None})
            return stats
        finally:
            lock.release()

    @staticmethod
    def _do(steps: Steps, action: Action, stats: dict[str, int], counted: str,
            failure: str) -> None:
        """One step the leader takes on its own: logged as a warning, counted in `stats`."""
        try:
            log.warning("fleet: %s", steps.do(action))
            stats[counted] += 1
        except StepFailed as exc:
            log.error("fleet: %s: %s", failure, exc)
            stats["failed"] += 1

    def _start(self, steps: Steps, action: Action, stats: dict[str, int]) -> None:
        store, now = self.ctx.store, self.ctx.clock()
        entry = store.fleet.get(action.name)
        if entry is None:
            return
        if float(entry.start.get("next", 0.0)) > now:
            return  # backing off: it was started a moment ago and is halted again
        attempts = int(entry.start.get("attempts", 0)) + 1
        error = ""
        try:
            log.info("fleet: %s", steps.do(action))
            stats["started"] += 1
        except StepFailed as exc:
            error = str(exc)
            stats["failed"] += 1
        store.fleet.update(action.name, start={"attempts": attempts, "last": now,
                                               "next": now + backoff(attempts), "error": error})
        if attempts >= FAILING_AFTER:
            log.error("fleet: %s keeps failing to run: started %d times, %s", action.name,
                      attempts, error or "halted again each time")

    def _move(self, steps: Steps, action: Action, stats: dict[str, int]) -> bool:
        """Its move to the pool of its folder, when due; whether it was done."""
        store, now = self.ctx.store, self.ctx.clock()
        entry = store.fleet.get(action.name)
        if entry is None:
            return False
        move = dict(entry.extra.get("move") or {})
        if move.get("to") != action.to_pool:  # first seen declared there: its time starts
            move = {"to": action.to_pool, "since": now, "attempts": 0, "next": 0.0}
            store.fleet.update(action.name, extra={**entry.extra, "move": move})
            self._say(f"{action.name}: declared in xenhost{action.to_pool}: moved there in "
                      f"{MOVE_AFTER_SECS:g} s unless apply --exec moves it first", logging.INFO)
        if now < float(move["since"]) + MOVE_AFTER_SECS or float(move["next"]) > now:
            return False
        attempts = int(move["attempts"]) + 1
        try:
            log.warning("fleet: %s", steps.do(action))
        except StepFailed as exc:
            stats["failed"] += 1
            move.update(attempts=attempts, next=now + backoff(attempts), error=str(exc))
            store.fleet.update(action.name, extra={**entry.extra, "move": move})
            level = logging.ERROR if attempts >= FAILING_AFTER else logging.WARNING
            log.log(level, "fleet: %s could not be moved (%d tries): %s", action.name,
                    attempts, exc)
            return False
        stats["moved"] += 1
        store.fleet.update(action.name,
                           extra={k: v for k, v in entry.extra.items() if k != "move"})
        return True

    def _recreate(self, steps: Steps, action: Action, stats: dict[str, int]) -> None:
        self._say(f"{action.name}: missing; recreate=true: building it again on {action.where}")
        self._do(steps, action, stats, "recreated", f"{action.name} could not be built again")

    def _forget_moves(self, moving: set[str]) -> None:
        """A move no longer wanted (its file went back): its waiting time starts again next
        time."""
        store = self.ctx.store
        for entry in store.fleet.find():
            if "move" in entry.extra and entry.name not in moving:
                store.fleet.update(entry.name, extra={k: v for k, v in entry.extra.items()
                                                      if k != "move"})

    def _forget_starts(self, seen: list) -> None:
        """A VM that has run for a while since its last start is well: its count restarts."""
        store, now = self.ctx.store, self.ctx.clock()
        running = {s.name for s in seen if s.ours and s.running}
        for entry in store.fleet.find():
            last = float(entry.start.get("last", 0.0) or 0.0)
            if entry.start and entry.name in running and now - last >= STABLE_SECS:
                store.fleet.update(entry.name, start={})
