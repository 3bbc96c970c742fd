"""Operator documents (host drain, maintenance runs): the contract on every backend."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from dynvm.core.store import Store


def test_doc_create_read_replace_delete(store: Store) -> None:
    assert store.documents.get("hosts") is None
    assert store.documents.update("hosts", lambda d: {"drained": {"1": {"by": "ops"}}}) == {
        "drained": {"1": {"by": "ops"}}}
    assert store.documents.get("hosts") == {"drained": {"1": {"by": "ops"}}}
    store.documents.update("hosts", lambda d: {**(d or {}), "n": 2})
    assert store.documents.get("hosts") == {"drained": {"1": {"by": "ops"}}, "n": 2}
    assert store.documents.update("hosts", lambda d: None) is None
    assert store.documents.get("hosts") is None
    assert store.documents.update("missing", lambda d: None) is None


def test_doc_updates_from_many_threads_lose_nothing(store: Store) -> None:
    def add(i: int) -> None:
        store.documents.update("counter", lambda d: {"items": sorted({*(d or {}).get("items", []), i})})

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(add, range(24)))
    assert store.documents.get("counter") == {"items": list(range(24))}


def test_outbox_wrapper_passes_documents_through(tmp_path) -> None:
    from dynvm.store.outbox import ResilientStore
    from dynvm.store.sqlite import SqliteStore

    primary = SqliteStore(str(tmp_path / "dynvm.sqlite"))
    wrapped = ResilientStore(primary, str(tmp_path / "outbox.sqlite"))
    try:
        wrapped.documents.update("hosts", lambda d: {"drained": {"2": {}}})
        assert primary.documents.get("hosts") == {"drained": {"2": {}}}
        assert wrapped.documents.get("hosts") == {"drained": {"2": {}}}
        assert wrapped.pending() == 0
    finally:
        wrapped.close()
