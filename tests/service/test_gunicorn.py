"""dynvm served for real: `dynvm serve` under gunicorn with two workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import requests

from tests.service.conftest import free_port, wait_until, write_ini

pytestmark = pytest.mark.slow


@pytest.fixture
def served(tmp_path, farm, clean_farm):
    ini = write_ini(tmp_path, farm)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dynvm", "serve", "--config", str(ini),
         "--bind", f"127.0.0.1:{port}", "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"dynvm serve exited: {proc.stdout.read()}")
        try:
            return requests.get(base + "/health", timeout=2).status_code in (200, 503)
        except requests.ConnectionError:
            return False

    try:
        wait_until(up, timeout=30, what="gunicorn to answer")
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_two_workers_serve_the_whole_life(served, probe) -> None:
    r = requests.get(served + "/getservers/gun?os=centos&count=2&format=detailed", timeout=120)
    assert r.status_code == 200, r.text
    assert sorted(json.loads(r.text)) == ["gun1", "gun2"]
    # any worker sees the leases the other wrote: they live in the store
    for _ in range(6):
        r = requests.get(served + "/showall", timeout=10)
        names = {row["name"] for rows in json.loads(r.text).values() for row in rows}
        assert {"gun1", "gun2"} <= names
    assert requests.get(served + "/getservers/gun1?os=centos", timeout=60).status_code == 409
    r = requests.get(served + "/releaseservers/gun?count=2", timeout=60)
    assert json.loads(r.text) == ["gun1", "gun2"]
    assert probe.vms_named("gun") == []
