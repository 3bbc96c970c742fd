"""The history repository: the seed's documents, one per VM, keyed by the VM's uuid."""

from __future__ import annotations

import abc
from typing import Any


class History(abc.ABC):
    """What every VM's life was: written as it goes, read by people and reports."""

    @abc.abstractmethod
    def put(self, vm_uuid: str, doc: dict[str, Any]) -> None:
        """Create or replace a VM's history document."""

    @abc.abstractmethod
    def update(self, vm_uuid: str, patch: dict[str, Any]) -> None:
        """Merge `patch` into a history document (created if missing)."""

    @abc.abstractmethod
    def get(self, vm_uuid: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def recent(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Most recent history documents first (by created_time)."""

    @abc.abstractmethod
    def mark(self) -> str:
        """A token that changes with every history write, by any process.

        Readers that keep what they read of the history (the dashboard and the
        metrics of each worker) reread only when it changed, so every worker
        shows the same history. Writers change it after the document (in the
        same atomic step where the backend has one), readers read it before
        the documents.
        """
