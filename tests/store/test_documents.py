"""The document repository (operator documents, the deployment identity), on every backend."""

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

def test_first_id_is_kept(store: Store) -> None:
    assert store.documents.deployment_id(None) is None  # reading never assigns one
    assert store.documents.deployment_id("first") == "first"
    assert store.documents.deployment_id("second") == "first"
    assert store.documents.deployment_id(None) == "first"

def test_racing_processes_agree(store: Store) -> None:
    with ThreadPoolExecutor(8) as pool:
        got = set(pool.map(store.documents.deployment_id, [f"id{i}" for i in range(16)]))
    assert len(got) == 1
