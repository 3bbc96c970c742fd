"""Requests through the outbox: a new request is new work (refused during an outage); its
end queues, so a request whose VMs were released still ends."""

from __future__ import annotations

from typing import Any

from dynvm.core.records import RequestRecord
from dynvm.core.store import Requests
from dynvm.store.outbox.journal import Outbox, Queued


class OutboxRequests(Requests):
    def __init__(self, primary: Requests, outbox: Outbox) -> None:
        self.primary = primary
        self._outbox = outbox
        outbox.handle({"finish_request": lambda a: self.primary.finish(
            a["request_id"], a["state"], a["detail"])})

    def put(self, req: RequestRecord) -> None:
        self.primary.put(req)

    def finish(self, request_id: str, state: str, detail: dict[str, Any] | None = None, *,
               expect: str | None = None) -> None:
        if expect is not None:  # a compare-and-set claims: it reaches the store now or fails
            self.primary.finish(request_id, state, detail, expect=expect)
            return
        self._outbox.write("finish_request", f"request:{request_id}",
                           {"request_id": request_id, "state": state, "detail": detail or {}})

    @staticmethod
    def _overlay(req: RequestRecord, queued: list[Queued]) -> None:
        for op, key, a in queued:
            if op == "finish_request" and key == f"request:{req.id}":
                req.state = a["state"]
                req.detail.update(a["detail"])

    def find(self, state: str | None = None) -> list[RequestRecord]:
        queued = self._outbox.queued_view()
        if queued is None:
            return self.primary.find(state)
        out = []
        for req in self.primary.find():
            self._overlay(req, queued)
            if state is None or req.state == state:
                out.append(req)
        return out

    def get(self, request_id: str) -> RequestRecord | None:
        req = self.primary.get(request_id)
        if req is not None:  # a finish still waiting in the outbox counts already
            self._overlay(req, self._outbox.pending_ops(f"request:{request_id}"))
        return req

    def note_vm(self, request_id: str, name: str, entry: dict[str, Any]) -> None:
        self.primary.note_vm(request_id, name, entry)  # progress only: never queued
