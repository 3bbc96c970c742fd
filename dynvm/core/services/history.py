"""History documents as their readers see them: a caller's own (all for an admin),
read once per change of the store, and a page of them for the v1 API.

The history only grows and reading it is most of a dashboard render, so one
read per process and change serves the page, its refreshes and each scrape.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from dynvm.core.callers import Caller, doc_owner
from dynvm.core.services.base import Runtime, Subject

HISTORY_SCAN = 20_000  # history documents searched at most (the dashboard, /metrics)
PAGE_SCAN = 5000  # history documents the v1 API pages through
DERIVED_MAX = 64  # results kept per read of the history (stats, the queries last asked)


class History(Subject):
    """The history as every worker reads it: the same documents, until the store changes.

    Reading and decoding every document is most of a dashboard render, and the
    page, its refreshes and each scrape all want it. The store's history mark
    is one small read and changes with every history write of any process, so
    every worker answers from the same history: a page and its CSV export agree.
    """

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self._lock = threading.Lock()
        self._mark: str | None = None
        self._docs: list[dict[str, Any]] = []
        self._derived: dict[str, Any] = {}

    def docs(self) -> list[dict[str, Any]]:
        """Every history document (most recent first), as the store holds it now.

        StoreDown when the store cannot be read: unknown is not the same as empty.
        """
        store = self.ctx.store
        mark = self.rt.read(store.history.mark)  # before the documents: a later write changes it
        with self._lock:
            if self._mark == mark:
                return self._docs
        docs = self.rt.read(lambda: store.history.recent(limit=HISTORY_SCAN))
        with self._lock:
            self._mark, self._docs, self._derived = mark, docs, {}
        return docs

    @staticmethod
    def visible(docs: list[dict[str, Any]], viewer: Caller) -> list[dict[str, Any]]:
        """The documents `viewer` may read: all for an admin (the same list), else its own."""
        if viewer.admin:
            return docs
        return [d for d in docs if viewer.may_own(doc_owner(d))]

    def derived(self, docs: list[dict[str, Any]], name: str,
                fn: Callable[[list[dict[str, Any]]], Any]) -> Any:
        """fn(docs), computed once per read of the history when `docs` is the whole of it."""
        with self._lock:
            if docs is self._docs and name in self._derived:
                return self._derived[name]
        out = fn(docs)
        with self._lock:
            if docs is self._docs:
                if len(self._derived) >= DERIVED_MAX:  # many distinct queries: start over
                    self._derived = {}
                self._derived[name] = out
        return out

    def page(self, caller: Caller, *, owner: str | None, os: str | None,
             since: float | None, until: float | None, page: int,
             per_page: int) -> tuple[list[dict], bool]:
        """`GET /api/v1/history`: documents the caller may read (its own, or all for
        admins), newest first; the page and whether another follows."""
        self.rt.touch()
        docs = [d for d in self.ctx.store.history.recent(limit=PAGE_SCAN)
                if caller.may_own(doc_owner(d)) and (owner is None or doc_owner(d) == owner)
                and (os is None or d.get("os") == os)
                and (since is None or float(d.get("created_time") or 0) >= since)
                and (until is None or float(d.get("created_time") or 0) < until)]
        start = (page - 1) * per_page
        return docs[start:start + per_page], len(docs) > start + per_page
