"""dynvm served for real: `dynvm serve` under gunicorn with two workers."""

from __future__ import annotations

import json

import pytest
import requests

from tests.service.conftest import served, write_ini

pytestmark = pytest.mark.served


def test_two_workers_serve_the_whole_life(tmp_path, farm, clean_farm, probe) -> None:
    with served(write_ini(tmp_path, farm), workers=2, log=tmp_path / "serve.log") as (base, _):
        r = requests.get(base + "/getservers/gun?os=centos&count=2&format=detailed", timeout=120)
        assert r.status_code == 200, r.text
        assert sorted(json.loads(r.text)) == ["gun1", "gun2"]
        # whichever worker answers sees the leases the other wrote: they live in the store
        for _ in range(6):
            r = requests.get(base + "/showall", timeout=10)
            names = {row["name"] for rows in json.loads(r.text).values() for row in rows}
            assert {"gun1", "gun2"} <= names
            r = requests.get(base + "/getservers/gun1?os=centos", timeout=60)
            assert r.status_code == 409
        r = requests.get(base + "/releaseservers/gun?count=2", timeout=60)
        assert json.loads(r.text) == ["gun1", "gun2"]
        assert probe.vms_named("gun") == []
