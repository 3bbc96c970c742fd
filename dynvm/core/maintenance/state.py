"""Maintenance state of record in the store: drained pools, hosts in maintenance, run status.

Every worker and instance reads the same documents, so a drain set from the
CLI takes effect in every process, and a maintenance run seen from `/health`
on one instance is the one another instance is executing.

- `hosts`: `{"drained": {"<N>": {...}}, "maintenance": {"<N>/<host uuid>": {...}}}`,
  read by placement on every request (one read);
- `maintenance:<N>`: the status of the last rolling reboot of `[xenhostN]`;
- lock `maintenance:<N>`: held (with a TTL, renewed) by the process running it.
"""

from __future__ import annotations

import time
from typing import Any

from dynvm.core.lifecycle import STOPPED_RUNS, RunState, check_run_move
from dynvm.core.store import Store

HOSTS_DOC = "hosts"
LOCK_TTL_SECS = 30.0


def status_key(ref: int) -> str:
    return f"maintenance:{ref}"


def lock_name(ref: int) -> str:
    return f"maintenance:{ref}"


def _hosts(store: Store) -> dict[str, Any]:
    return store.documents.get(HOSTS_DOC) or {}


def drained(store: Store) -> dict[int, dict[str, Any]]:
    """Pools drained in the store: N -> who and since when."""
    return {int(k): v for k, v in _hosts(store).get("drained", {}).items()}


def set_drain(store: Store, ref: int, on: bool, by: str = "") -> None:
    def edit(doc: dict[str, Any] | None) -> dict[str, Any]:
        doc = dict(doc or {})
        d = dict(doc.get("drained", {}))
        if on:
            d.setdefault(str(ref), {"since": time.time(), "by": by})
        else:
            d.pop(str(ref), None)
        doc["drained"] = d
        return doc
    store.documents.update(HOSTS_DOC, edit)


def in_maintenance(store: Store) -> dict[str, dict[str, Any]]:
    """Member hosts out of placement for maintenance: "<N>/<uuid>" -> run and since when."""
    return dict(_hosts(store).get("maintenance", {}))


def set_in_maintenance(store: Store, key: str, on: bool, run: str = "") -> None:
    def edit(doc: dict[str, Any] | None) -> dict[str, Any]:
        doc = dict(doc or {})
        m = dict(doc.get("maintenance", {}))
        if on:
            m[key] = {"since": time.time(), "run": run}
        else:
            m.pop(key, None)
        doc["maintenance"] = m
        return doc
    store.documents.update(HOSTS_DOC, edit)


def is_blocked(blocked: frozenset[str], ref: int, member_uuid: str) -> bool:
    """Whether member `member_uuid` of `[xenhost<ref>]` is out of placement (see below)."""
    return str(ref) in blocked or f"{ref}/{member_uuid}" in blocked


def placement_blocked(store: Store) -> frozenset[str]:
    """What placement must skip: "<N>" for drained pools, "<N>/<uuid>" for members in maintenance."""
    doc = _hosts(store)
    return frozenset(list(doc.get("drained", {})) + list(doc.get("maintenance", {})))


def get_status(store: Store, ref: int) -> dict[str, Any] | None:
    return store.documents.get(status_key(ref))


def put_status(store: Store, ref: int, **changes: Any) -> dict[str, Any]:
    """Merge `changes` into the run status of `[xenhostN]` (stamped with the time); a new
    `state` must be a move `lifecycle.RUN_MOVES` declares."""
    def edit(doc: dict[str, Any] | None) -> dict[str, Any]:
        doc = dict(doc or {})
        if "state" in changes:
            check_run_move(doc.get("state"), changes["state"])
        doc.update(changes)
        doc["updated"] = time.time()
        return doc
    out = store.documents.update(status_key(ref), edit)
    assert out is not None
    return out


def held_by(store: Store, ref: int, run: str) -> list[str]:
    """Uuids of the member hosts of `[xenhostREF]` that run `run` holds out of placement."""
    out = []
    for key, entry in in_maintenance(store).items():
        pool, _, member = key.partition("/")
        if pool == str(ref) and entry.get("run") == run:
            out.append(member)
    return out


def finish(ref: int, left: list[dict[str, Any]]) -> str:
    """The commands that bring hosts a stopped run left behind back into service."""
    by_hand = " ".join(f"`xe host-enable uuid={h['uuid']}`" for h in left
                       if h.get("disabled") is not False)
    return (f"run `dynvm maintenance reboot {ref} --exec` to resume (it brings them back), "
            f"or give them back by hand: {by_hand + ' then ' if by_hand else ''}"
            f"`dynvm hosts undrain {ref}`")


def report(store: Store, ref: int, doc: dict[str, Any]) -> None:
    """Add `hosts_left` and `finish` to the status `doc` of a stopped run that left hosts
    out of placement (a run whose process died included)."""
    if doc.get("state") not in STOPPED_RUNS:
        doc.pop("hosts_left", None)
        return
    recorded = {h["uuid"]: h for h in doc.get("hosts_left") or []}
    names = dict(zip(doc.get("order_uuids") or [], doc.get("order") or [], strict=False))
    left = [recorded.get(u, {"host": names.get(u, u), "uuid": u, "disabled": None})
            for u in held_by(store, ref, str(doc.get("run")))]
    doc["hosts_left"] = left
    if left:
        doc["finish"] = finish(ref, left)


def all_status(store: Store, refs: list[int]) -> dict[int, dict[str, Any]]:
    """Status of every pool that has one, with whether its run is still held by a live process."""
    out = {}
    for ref in refs:
        doc = get_status(store, ref)
        if doc is None:
            continue
        holder = store.locks.holder(lock_name(ref))
        doc = dict(doc)
        doc["held_by"] = holder
        if doc.get("state") == RunState.RUNNING and holder is None:
            doc["state"] = RunState.INTERRUPTED.value
        report(store, ref, doc)
        out[ref] = doc
    return out
