"""INI changes take effect without a restart; a broken INI is refused."""

from __future__ import annotations

import json
import re

from tests.service.conftest import FAST, wait_until, write_ini


def first_section(ini: str) -> str:
    """Only [xenhost1] of the farm's sections."""
    parts = re.split(r"(?m)^(?=\[xenhost)", ini)
    return "".join(p for p in parts if p.startswith("[xenhost1]"))


def test_reload_adds_a_host_and_broken_file_is_refused(tmp_path, farm, clean_farm) -> None:
    from dynvm.api import create_app
    from dynvm.core.service import build_service

    ini = write_ini(tmp_path, farm, hosts=first_section(farm.ini_sections()))
    svc = build_service(str(ini), timings=FAST)
    try:
        c = create_app(service=svc).test_client()
        assert sorted(json.loads(c.get("/showall").text)) == ["1"]

        full = write_ini(tmp_path, farm)  # same path, now with both hosts
        assert full == ini
        wait_until(lambda: sorted(json.loads(c.get("/showall").text)) == ["1", "2"],
                   timeout=10, what="the new host to appear")

        good = ini.read_text()
        ini.write_text(good + "\n[xenhost3]\nhost.name=\n")  # missing keys: refused
        wait_until(lambda: c.get("/health").get_json()["config"]["error"], timeout=10,
                   what="the broken file to be reported")
        h = c.get("/health")
        assert h.status_code == 503
        assert "xenhost3" in h.get_json()["config"]["error"]
        assert sorted(json.loads(c.get("/showall").text)) == ["1", "2"]  # last good in force

        ini.write_text(good)
        wait_until(lambda: c.get("/health").get_json()["config"]["error"] is None,
                   timeout=10, what="the fixed file to be accepted")
    finally:
        svc.close()
