"""Every file dynvm creates is private from its first byte: 0600 files in 0700 directories,
whatever the umask of the process that runs it (these tests run it with umask 0, so a
file created without an explicit mode would be world-writable)."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from dynvm.api import create_app
from testbed.inis import Ini
from tests.service.conftest import dynvm_on, served, write_ini
from tests.support.files import not_private

pytestmark = pytest.mark.served


def test_served_service_creates_only_private_files(tmp_path: Path, farm, clean_farm) -> None:
    state = tmp_path / "state"  # created by dynvm, with the directory under it
    ini = write_ini(tmp_path, farm)
    Ini.parse(ini.read_text()).set("store", {
        "sqlite.path": state / "db" / "dynvm.sqlite",
        "outbox.path": state / "db" / "outbox.sqlite"}).write(ini)
    tmpdir = tmp_path / "tmp"  # where the Prometheus directory goes
    tmpdir.mkdir()
    with served(ini, workers=2, umask=0, env={"TMPDIR": str(tmpdir)},
                log=tmp_path / "serve.log") as (base, _):
        # pools= writes to the static-pool table of the SQLite file too.
        r = requests.get(f"{base}/getservers/priv?os=centos&pools=regression", timeout=120)
        assert r.status_code == 200, r.text
        assert requests.get(f"{base}/metrics", timeout=30).status_code == 200
        assert requests.get(f"{base}/releaseservers/priv", timeout=120).status_code == 200
        created = {p.name for p in (state / "db").iterdir()}
        assert {"dynvm.sqlite", "dynvm.sqlite-wal", "outbox.sqlite"} <= created, created
        assert not_private(state) == {}
        metrics = list(tmpdir.glob("dynvm-metrics-*"))
        assert len(metrics) == 1 and any(metrics[0].iterdir()), metrics
        assert not_private(metrics[0]) == {}


def test_existing_readable_store_file_is_made_private_and_said(
        tmp_path: Path, farm, clean_farm, caplog) -> None:
    """A store an older dynvm left 0644 is not kept world-readable: it is made 0600,
    with a warning naming the file."""
    db = tmp_path / "dynvm.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x)")  # keeps -wal and -shm while open
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    for suffix in ("", "-wal", "-shm"):
        os.chmod(f"{db}{suffix}", 0o644)
    caplog.set_level(logging.WARNING)
    try:
        with dynvm_on(write_ini(tmp_path, farm)) as svc:
            client = create_app(service=svc).test_client()
            assert client.get("/health").status_code == 200
            for suffix in ("", "-wal", "-shm"):
                assert stat.S_IMODE(os.stat(f"{db}{suffix}").st_mode) == 0o600, suffix
            assert f"{db} was readable by others (0644); made 0600" in caplog.text
    finally:
        conn.close()


def test_removal_confirmation_is_private(tmp_path: Path, farm) -> None:
    ini = write_ini(tmp_path, farm)
    done = subprocess.run([sys.executable, "-m", "dynvm", "check-config", "--accept-removal",
                           str(ini)], capture_output=True, text=True, umask=0, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    confirmation = Path(f"{ini}.accept-removal")
    assert stat.S_IMODE(confirmation.stat().st_mode) == 0o600
