"""The deployment identity: generated once, kept in the store, the same for every process."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from dynvm.core.store import Store, StoreUnavailable
from dynvm.store import ResilientStore
from dynvm.store.couchbase import CouchbaseStore
from tests.support.cb_standin import StandInCollection


def test_first_id_is_kept(store: Store) -> None:
    assert store.documents.deployment_id(None) is None  # reading never assigns one
    assert store.documents.deployment_id("first") == "first"
    assert store.documents.deployment_id("second") == "first"
    assert store.documents.deployment_id(None) == "first"


def test_racing_processes_agree(store: Store) -> None:
    with ThreadPoolExecutor(8) as pool:
        got = set(pool.map(store.documents.deployment_id, [f"id{i}" for i in range(16)]))
    assert len(got) == 1


def test_outbox_wrapper_asks_the_store_and_never_guesses(tmp_path) -> None:
    coll = StandInCollection()
    wrapped = ResilientStore(CouchbaseStore(coll, io_retries=1, backoff_secs=0.0),
                             str(tmp_path / "outbox.sqlite"))
    assert wrapped.documents.deployment_id("a") == "a"
    assert wrapped.documents.deployment_id("b") == "a"
    coll.offline = True
    with pytest.raises(StoreUnavailable):
        wrapped.documents.deployment_id("c")
    wrapped.close()


def test_check_config_shows_the_identity_and_creates_nothing(tmp_path) -> None:
    from click.testing import CliRunner

    from dynvm.cli import main
    from dynvm.store.sqlite import SqliteStore

    db = tmp_path / "state" / "dynvm.sqlite"
    ini = tmp_path / "dynvm.ini"
    ini.write_text("[xenhost1]\nhost.name=http://127.0.0.1:9\nhost.user=root\n"
                   "host.password=x\nhost.storage.name=Local storage\n"
                   "centos.template=tmpl-cnt7.7\n"
                   f"[store]\nbackend=sqlite\nsqlite.path={db}\n")
    result = CliRunner().invoke(main, ["check-config", str(ini)])
    assert result.exit_code == 0, result.output
    assert "deployment: not assigned yet (the first start assigns " in result.output
    assert not db.exists()
    store = SqliteStore(str(db))
    assert store.documents.deployment_id("d-42") == "d-42"
    store.close()
    result = CliRunner().invoke(main, ["check-config", str(ini)])
    assert "deployment: d-42" in result.output


def test_proposed_id_follows_the_store_location(tmp_path) -> None:
    from dynvm.config import StoreConfig
    from dynvm.core.deployment import proposed_id

    a = StoreConfig(sqlite_path=str(tmp_path / "a" / "dynvm.sqlite"))
    b = StoreConfig(sqlite_path=str(tmp_path / "b" / "dynvm.sqlite"))
    assert proposed_id(a) == proposed_id(a)  # a store lost and made again: the same identity
    assert proposed_id(a) != proposed_id(b)  # separate stores: separate deployments
