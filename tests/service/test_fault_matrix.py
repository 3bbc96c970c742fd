"""Each XenAPI build step failing, with and without a failing rollback, leaves nothing behind.

An all-or-none request for two VMs: one is built, the other fails at the
step under test, so the built one is rolled back (a clone is tried again on
another host, so for the clone step every clone fails and nothing is built). With a failing rollback,
`VM.destroy` fails too (both for the half-built VM and for the rollback);
the background worker must finish the job: the test moves the core's clock past
the retry's back-off instead of waiting for it. Either way the farm ends exactly
as it started, with no lease, reservation or name lock left.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dynvm.core.getservers import NAME_LOCK
from dynvm.core.reconcile import retry_backoff
from dynvm.core.release import RETRY_MARK
from dynvm.core.services import Dynvm
from dynvm.sim import Farm
from tests.service.conftest import dynvm_on, wait_until, write_ini
from tests.support.clock import SteppedClock

# Every XenAPI call the build makes, in order (VIF.move when the template has a VIF).
CLONE_EVERYWHERE = 50
STEPS = ["VM.clone", "VM.get_record", "VM.set_other_config", "VM.set_name_description",
         "VIF.create", "VM.provision", "VM.start_on", "VM.add_to_other_config"]


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
def service(tmp_path: Path, farm: Farm, clean_farm: dict, clock: SteppedClock) -> Iterator[Dynvm]:
    with dynvm_on(write_ini(tmp_path, farm), clock=clock) as svc:
        yield svc


@pytest.mark.parametrize("rollback_fails", [False, True], ids=["rollback-ok", "rollback-fails"])
@pytest.mark.parametrize("step", STEPS)
def test_a_failed_build_step_leaves_nothing(step, rollback_fails, client, service, farm,
                                            probe, clean_farm, clock) -> None:
    store = service.ctx.store
    # A failed clone is tried again on another host: it must fail everywhere to fail a VM.
    times = CLONE_EVERYWHERE if step == "VM.clone" else 1
    farm.fail_next(step, times, "INTERNAL_ERROR", [f"injected failure of {step}"])
    if rollback_fails:
        farm.fail_next("VM.destroy", 2, "INTERNAL_ERROR", ["injected failure of VM.destroy"])
    try:
        r = client.get("/getservers/fm?os=centos&count=2")
    finally:
        left = sum(rule.count for rule in farm.faults._rules
                   if step.endswith(rule.method) or rule.method.endswith(step))
        farm.clear_faults()  # from here on only the background worker can mend things
    assert r.status_code in (499, 502), r.text
    assert left < times  # the step did fail
    # the client was told; every lease is gone or being destroyed, never active
    assert all(lease.state == "releasing" for lease in store.leases.find())
    marks = [lease.extra[RETRY_MARK] for lease in store.leases.find() if RETRY_MARK in lease.extra]
    # A failed rollback is left for a retry (when every clone fails, nothing is destroyed).
    assert bool(marks) == (rollback_fails and step != "VM.clone")
    if marks:  # the retry's back-off is over: the next reconcile pass destroys them
        clock.advance(max(retry_backoff(m) for m in marks))
    service.background.ensure_started()
    wait_until(lambda: probe.state() == clean_farm, timeout=60,
               what=f"the farm to be clean after {step} failed")
    wait_until(lambda: store.leases.find() == [] and store.reservations.live() == []
               and store.locks.holder(NAME_LOCK + "fm1") is None
               and store.locks.holder(NAME_LOCK + "fm2") is None,
               timeout=30, what="leases, reservations and name locks to be gone")
    assert [q.state for q in store.requests.find() if q.name == "fm"] == ["failed"]
