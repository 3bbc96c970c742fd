"""How far each VM of a request has got, kept in the request record.

A getservers call can take minutes; the dashboard and the v1 API show where
each of its VMs is. The steps live in the store (the request record's
`detail["vms"]`), so any worker or instance can answer, whichever one builds.
Progress is best effort: a store hiccup never fails a build.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from dynvm.core.context import Context
from dynvm.core.lifecycle import FINAL_STEPS, CoreEvent, Step
from dynvm.core.store import RequestRecord

# The steps are declared with every other vocabulary, in `dynvm.core.lifecycle`.
__all__ = ["FINAL_STEPS", "STEP_TIME_PREFIX", "Step", "VmProgress", "note", "of_request"]

log = logging.getLogger("dynvm.progress")

STEP_TIME_PREFIX = "at:"  # detail["vms"][name]["at:<step>"] = epoch seconds the step began


@dataclass(frozen=True)
class VmProgress:
    name: str
    step: Step
    since: float  # epoch seconds the step began
    ip: str = ""
    reason: str = ""  # why it failed
    host_ref: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "step": str(self.step), "since": self.since, "ip": self.ip,
                "reason": self.reason, "host_ref": self.host_ref}


def note(ctx: Context, request_id: str, name: str, step: Step | str, *, ip: str = "",
         reason: str = "", host_ref: int | None = None, os: str = "") -> None:
    """Record that VM `name` of request `request_id` reached `step`; never raises.

    The process building it also reports the time spent in the step it left, once (`os`
    is given with the first step, `reserved`).
    """
    _observe(ctx, request_id, name, Step(step), os)
    entry: dict[str, Any] = {"step": str(Step(step)), "since": round(ctx.clock(), 3)}
    # When each step began, kept beside the latest one (the store merges the entry
    # shallowly, so one key per step): /metrics derives step durations from it.
    entry[f"{STEP_TIME_PREFIX}{entry['step']}"] = entry["since"]
    if ip:
        entry["ip"] = ip
    if reason:
        entry["reason"] = reason
    if host_ref is not None:
        entry["host_ref"] = host_ref
    try:
        ctx.store.requests.note_vm(request_id, name, entry)
    except Exception as exc:  # progress is for watchers; the build goes on
        log.debug("could not note %s of %s at %s: %s", name, request_id, step, exc)


def _observe(ctx: Context, request_id: str, name: str, step: Step, os_key: str) -> None:
    left = ctx.step_reached((request_id, name), os_key, str(step), step in FINAL_STEPS)
    if left is not None:
        os_key = os_key or left[0]
        ctx.event(CoreEvent.STEP_DONE, os=os_key, step=left[1],
                  seconds=max(ctx.clock() - left[2], 0.0))


def of_request(req: RequestRecord) -> list[VmProgress]:
    """The VMs of a request with their latest step, in name order."""
    out = []
    for name, e in sorted((req.detail.get("vms") or {}).items()):
        try:
            step = Step(e.get("step", ""))
        except ValueError:
            continue  # written by a newer dynvm: leave it out rather than guess
        out.append(VmProgress(name=name, step=step, since=float(e.get("since", 0.0)),
                              ip=str(e.get("ip", "")), reason=str(e.get("reason", "")),
                              host_ref=e.get("host_ref")))
    return out
