"""The request repository: getservers requests in flight, and how each of their VMs fares."""

from __future__ import annotations

import abc
from typing import Any

from dynvm.core.records import RequestRecord


class Requests(abc.ABC):
    """Requests by id, so another worker can follow one and a restart can tell what was cut."""

    @abc.abstractmethod
    def put(self, req: RequestRecord) -> None: ...

    @abc.abstractmethod
    def finish(self, request_id: str, state: str, detail: dict[str, Any] | None = None, *,
               expect: str | None = None) -> None:
        """Move a request to `state`, merging `detail` (no-op if the request is unknown).

        The move is checked in the same atomic step against the request's
        current state (`lifecycle.check_request_move`): IllegalTransition if
        the lifecycle does not declare it, or if the request is not in `expect`
        (when given: a compare-and-set, so of two callers moving a queued
        request one way and the other, exactly one succeeds).
        """

    @abc.abstractmethod
    def find(self, state: str | None = None) -> list[RequestRecord]:
        """Requests (in `state`, or all), oldest first."""

    @abc.abstractmethod
    def get(self, request_id: str) -> RequestRecord | None: ...

    @abc.abstractmethod
    def note_vm(self, request_id: str, name: str, entry: dict[str, Any]) -> None:
        """Merge `entry` into `detail["vms"][name]` of a request (no-op if it is unknown).

        How far each VM of a request has got, for anyone watching it from
        another worker or instance.
        """
