"""What a stopped rolling reboot leaves out of service, and how that is said and undone.

A run takes hosts out of dynvm placement (in the store) and disables them in
XAPI as it goes. When it stops part way, it gives back every host it can
(`give_back`); what it cannot (a host still down, say) stays out and is named,
with the commands that finish the job (`state.report`), on `/health`,
`GET /maintenance`, `dynvm maintenance status` and `dynvm hosts`.
"""

from __future__ import annotations

from typing import Any

from dynvm.core.capacity import host_key
from dynvm.core.lifecycle import RunStep
from dynvm.core.maintenance import state as S
from dynvm.core.maintenance.ports import HostState, MaintenancePort
from dynvm.core.store import Store

# A host whose turn had not come, or that had not been asked to reboot yet, is up as
# it was: it goes back at once. One asked to reboot goes back only once it is back.
REBOOT_ASKED = (RunStep.WAIT, RunStep.ENABLE)


def give_back(store: Store, port: MaintenancePort, ref: int, status: dict[str, Any]
              ) -> list[dict[str, Any]]:
    """Put every host the stopped run `status` holds back in service where that is safe:
    enabled in XAPI, back in placement. Returns the hosts left out, for the status."""
    names = dict(zip(status.get("order_uuids") or [], status.get("order") or [], strict=False))
    current, step = status.get("host"), status.get("step")
    held = S.held_by(store, ref, str(status.get("run")))
    if not held:
        return []
    states: dict[str, HostState] = {h.uuid: h for h in port.hosts()}
    left = []
    for member in held:
        host = states.get(member)
        why = _why_not(host, member == current, step, str(status.get("booted") or ""))
        if why is None and host is not None:
            if not host.enabled:
                port.enable_host(member)
            S.set_in_maintenance(store, host_key(ref, member), False)
            continue
        left.append({"host": names.get(member, member), "uuid": member,
                     "disabled": None if host is None else not host.enabled, "why": why})
    return left


def _why_not(host: HostState | None, current: bool, step: str | None,
             booted: str) -> str | None:
    """Why a held host must stay out of service; None when it can go back."""
    if host is None:
        return "not in the pool any more"
    if not host.live:
        return "down (rebooting?)"
    if current and step in REBOOT_ASKED and (not booted or host.boot_time == booted):
        return "asked to reboot, not seen back from it"
    return None


def release(store: Store, ref: int) -> list[str]:
    """Put back in placement the hosts of `[xenhostREF]` that a run no longer running
    left out (`dynvm hosts undrain`); returns their keys. A run in progress keeps its own."""
    if store.locks.holder(S.lock_name(ref)) is not None:
        return []
    keys = [k for k in S.in_maintenance(store) if k.partition("/")[0] == str(ref)]
    for key in keys:
        S.set_in_maintenance(store, key, False)
    return keys
