"""The deployment identity: generated once, kept in the store, the same for every process.

The repository's contract (`documents.deployment_id`) is in test_documents.py; the
outbox never answers it from a queue (test_store.py).
"""

from __future__ import annotations


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
    from dynvm.store.factory import proposed_identity as proposed_id

    a = StoreConfig(sqlite_path=str(tmp_path / "a" / "dynvm.sqlite"))
    b = StoreConfig(sqlite_path=str(tmp_path / "b" / "dynvm.sqlite"))
    assert proposed_id(a) == proposed_id(a)  # a store lost and made again: the same identity
    assert proposed_id(a) != proposed_id(b)  # separate stores: separate deployments
