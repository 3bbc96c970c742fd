"""History through the outbox: writes queue during an outage, reads show them already."""

from __future__ import annotations

from typing import Any

from dynvm.core.store import History
from dynvm.store.outbox.journal import Outbox


class OutboxHistory(History):
    """A VM destroyed while the store is down still gets its history closed, later."""

    def __init__(self, primary: History, outbox: Outbox) -> None:
        self.primary = primary
        self._outbox = outbox
        outbox.handle({
            "put_history": lambda a: self.primary.put(a["vm_uuid"], a["doc"]),
            "update_history": lambda a: self.primary.update(a["vm_uuid"], a["patch"]),
        })

    def put(self, vm_uuid: str, doc: dict[str, Any]) -> None:
        self._outbox.write("put_history", f"history:{vm_uuid}", {"vm_uuid": vm_uuid, "doc": doc})

    def update(self, vm_uuid: str, patch: dict[str, Any]) -> None:
        self._outbox.write("update_history", f"history:{vm_uuid}",
                           {"vm_uuid": vm_uuid, "patch": patch})

    def get(self, vm_uuid: str) -> dict[str, Any] | None:
        queued = self._outbox.queued_view(f"history:{vm_uuid}")
        doc = self.primary.get(vm_uuid)
        if queued:
            for op, _, a in queued:
                if op == "put_history":
                    doc = dict(a["doc"])
                elif op == "update_history":
                    doc = {**(doc or {}), **a["patch"]}
        return doc

    def recent(self, limit: int = 1000) -> list[dict[str, Any]]:
        self._outbox.queued_view()
        return self.primary.recent(limit)

    def mark(self) -> str:
        self._outbox.queued_view()
        return self.primary.mark()
