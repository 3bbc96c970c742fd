"""A store that cannot be read is an outage, said out loud: never an empty answer.

The store is dynvm's SQLite backend on a real file, replaced under the running
service by a damaged one (what a bad restore or a broken disk leaves); Xen is
the simulator over real XML-RPC. Every read of the store's records answers 503
with a problem body, the page shows a banner, and a leased VM does not turn
"untracked" because its lease could not be read.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

import dynvm.store.sqlite.db as sqlite_db
from dynvm.api import create_app
from dynvm.core import tokens
from dynvm.core.services import Dynvm
from dynvm.sim import Farm
from tests.service.conftest import dynvm_on, wait_until, write_ini
from tests.support.auth import ADMIN, auth_section, bearer, make_tokens

PROBLEM = "application/problem+json"
READS = ("/ui/api/requests", "/ui/api/history", "/ui/api/history/stats", "/ui/history.csv",
         "/ui/api/vms", "/ui/api/hosts", "/ui/api/capacity", "/ui/api/warmpools",
         "/ui/fragments")


@pytest.fixture
def svc(tmp_path: Path, farm: Farm, clean_farm, monkeypatch) -> Iterator[Dynvm]:
    monkeypatch.setattr(sqlite_db, "IDENTITY_CHECK_SECS", 0.0)  # see a new file at once
    monkeypatch.setattr(sqlite_db, "BUSY_TIMEOUT_SECS", 0.3)
    with dynvm_on(write_ini(tmp_path, farm)) as service:
        yield service


class Damage:
    """Replace the store's file with garbage (a new file at its path), and put it back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.saved = path.with_suffix(".saved")

    def __enter__(self) -> Damage:
        conn = sqlite3.connect(self.path)  # everything committed into the main file first
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        os.replace(self.path, self.saved)
        junk = self.path.with_suffix(".junk")
        junk.write_bytes(b"not a database, whatever it once was " * 200)
        os.replace(junk, self.path)
        return self

    def __exit__(self, *exc: object) -> None:
        os.replace(self.saved, self.path)


def _problem_503(resp, path: str) -> dict:
    assert resp.status_code == 503, (path, resp.status_code, resp.get_data(as_text=True)[:300])
    assert resp.headers["Content-Type"] == PROBLEM, (path, resp.headers["Content-Type"])
    body = resp.get_json()
    assert body["status"] == 503 and "store" in body["detail"], (path, body)
    return body


def _leased_vm(client: FlaskClient) -> str:
    r = client.get("/getservers/keep?os=centos")
    assert r.status_code == 200, r.text
    return "keep"


def test_every_read_of_an_unreadable_store_is_a_503_problem(svc, tmp_path) -> None:
    client = create_app(service=svc).test_client()
    _leased_vm(client)
    secret, _ = tokens.create(svc.ctx.store, "team-a")
    bearer = {"Authorization": f"Bearer {secret}"}
    for path in READS:
        assert client.get(path).status_code == 200, path
    assert client.get("/api/v1/capacity", headers=bearer).status_code == 200
    assert client.get("/getavailablecount/centos").status_code == 200
    with Damage(tmp_path / "dynvm.sqlite"):
        for path in READS:
            _problem_503(client.get(path), path)
        for path in ("/api/v1/requests/" + "0" * 32, "/api/v1/vms", "/api/v1/history",
                     "/api/v1/capacity", "/api/v1/quota"):
            _problem_503(client.get(path, headers=bearer), path)
        # The legacy count cannot say how much room is being taken: no guess either.
        legacy = client.get("/getavailablecount/centos")
        assert legacy.status_code == 503 and legacy.text.startswith("Error:"), legacy.text
        assert "store" in legacy.text
        ready = client.get("/health/ready")
        assert ready.status_code == 503, ready.text
        assert ready.json["reasons"][0].startswith("the state store cannot be read")
        health = client.get("/health")
        assert health.status_code == 503 and "store" in health.json["reasons"][0]
        # The metrics leave the store's series out rather than report zeros.
        metrics = client.get("/metrics").text
        assert "dynvm_store_up 0.0" in metrics
        assert "dynvm_vms{" not in metrics and "dynvm_available_vms{" not in metrics
    wait_until(lambda: client.get("/ui/api/requests").status_code == 200, timeout=30,
               what="the store to be read again once the file is back")
    assert client.get("/health/ready").status_code == 200


def test_the_page_shows_a_banner_and_leased_vms_as_leased(svc, tmp_path) -> None:
    client = create_app(service=svc).test_client()
    name = _leased_vm(client)
    page = client.get("/")
    assert page.status_code == 200
    assert 'id="store-banner" class="banner" role="alert" hidden' in page.text
    with Damage(tmp_path / "dynvm.sqlite"):
        page = client.get("/")
        html = page.text
        assert page.status_code == 503
        assert 'id="store-banner" class="banner" role="alert">' in html  # shown
        assert "The state store cannot be read" in html
        row = html[html.index(f'data-name="{name}"'):]
        row = row[:row.index("</tr>")]
        assert "untracked" not in row, row
        assert '<span class="badge leased">leased</span>' in row, row
        # Store-made sections say they cannot be shown, never "none" / "no documents".
        for section in ("requests-unavailable", "warm-unavailable", "history-unavailable"):
            assert f'id="{section}"' in html, section
        assert "no documents match" not in html and "nothing being built" not in html


def test_with_tokens_on_the_outage_is_said_the_same_way(tmp_path, farm, clean_farm,
                                                        monkeypatch) -> None:
    """With [auth], even the token cannot be checked: still a 503 problem, and words on the page."""
    monkeypatch.setattr(sqlite_db, "IDENTITY_CHECK_SECS", 0.0)
    monkeypatch.setattr(sqlite_db, "BUSY_TIMEOUT_SECS", 0.3)
    with dynvm_on(write_ini(tmp_path, farm, extra=auth_section("mutating"))) as service:
        client = create_app(service=service).test_client()
        admin = bearer(make_tokens(service)[ADMIN])
        with Damage(tmp_path / "dynvm.sqlite"):
            for path in READS:
                _problem_503(client.get(path, headers=admin), path)
            page = client.get("/", headers=admin)
            assert page.status_code == 503 and page.mimetype == "text/html"
            assert "The dashboard cannot be shown" in page.text and "store" in page.text
