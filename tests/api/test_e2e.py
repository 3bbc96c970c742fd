"""The HTTP API over the real stack: Flask app -> core -> XenAPI -> simulated farm."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from dynvm.api import create_app
from dynvm.core.services import Dynvm
from dynvm.runtime.bootstrap import build_service
from dynvm.sim import Farm
from testbed.inis import farm_ini
from testbed.serving import wait_until
from tests.api.test_jenkins import PIPELINE, PIPELINE_JSON_TOOL, assert_ips, run_pipeline
from tests.api.test_validation import BAD_REQUESTS

IPV4 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
SPEED = 200.0


def _start_farm(hosts: int = 2) -> Farm:
    return Farm.generate(pools=hosts, hosts=1, speed=SPEED).start()


def _service(farm: Farm, tmp: Path) -> Dynvm:
    ini = farm_ini(farm, tmp).write(tmp / "dynvmservice.ini")
    return build_service(str(ini), background=False)


@pytest.fixture(scope="module")
def farm() -> Iterator[Farm]:
    f = _start_farm()
    try:
        yield f
    finally:
        f.stop()


@pytest.fixture(scope="module")
def client(farm: Farm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlaskClient]:
    svc = _service(farm, tmp_path_factory.mktemp("e2e"))
    try:
        yield create_app(service=svc).test_client()
    finally:
        svc.close()


def _get(client: FlaskClient, url: str, status: int = 200) -> str:
    resp = client.get(url)
    body = resp.get_data(as_text=True)
    assert resp.status_code == status, (url, resp.status_code, body)
    return body


def test_bad_input_never_reaches_xen(tmp_path: Path) -> None:
    farm = _start_farm()
    svc = _service(farm, tmp_path)
    try:
        client = create_app(service=svc).test_client()
        _get(client, "/getservers/t?count=0", 400)  # let any lazy set-up happen first
        before = farm.call_counts()
        for url, param in BAD_REQUESTS:
            body = _get(client, url, 400)
            assert f"'{param}'" in body, (url, body)
        assert farm.call_counts() == before
    finally:
        svc.close()
        farm.stop()


def test_getservers_detailed_roundtrip(client: FlaskClient, tmp_path: Path) -> None:
    free_before = int(_get(client, "/getavailablecount/centos"))
    assert free_before >= 3
    resp = client.get("/getservers/jrt?os=centos&count=3&format=detailed&expiresin=30")
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200, body
    assert resp.headers["Content-Type"] == "application/json"
    answer = json.loads(body)
    assert sorted(answer) == ["jrt1", "jrt2", "jrt3"]
    assert all(IPV4.fullmatch(ip) for ip in answer.values())
    assert body == json.dumps(answer, indent=2, sort_keys=True)
    for script in (PIPELINE, PIPELINE_JSON_TOOL):
        words = run_pipeline(script, resp.get_data(), "jrt", tmp_path)
        assert_ips(words, 3)
        assert sorted(words) == sorted(answer.values())

    assert int(_get(client, "/getavailablecount/centos")) == free_before - 3

    showall = json.loads(_get(client, "/showall"))
    shown = {row["name"]: row for rows in showall.values() for row in rows}
    for name, ip in answer.items():
        assert shown[name]["power_state"] == "Running"
        assert ip in shown[name]["networkinfo"].split(",")

    changed = _get(client, "/setexpiry/jrt/45?count=3")
    assert json.loads(changed) == ["jrt1", "jrt2", "jrt3"]
    released = _get(client, "/releaseservers/jrt?count=3")
    assert released == '[\n  "jrt1",\n  "jrt2",\n  "jrt3"\n]'
    assert _get(client, "/releaseservers/jrt?count=3", 404) == "Error: VM jrt doesn't exist"
    wait_until(lambda: not {"jrt1", "jrt2", "jrt3"} & {
        row["name"] for rows in json.loads(_get(client, "/showall")).values() for row in rows
    }, timeout=20, what="released VMs to leave /showall")


def test_getservers_list_on_chosen_host(client: FlaskClient) -> None:
    body = _get(client, "/getservers/pinned?xhostref=2")
    [ip] = json.loads(body)
    assert body == json.dumps([ip])
    showall = json.loads(_get(client, "/showall"))
    assert "pinned" in [row["name"] for row in showall["2"]]
    assert "pinned" not in [row["name"] for row in showall.get("1", [])]
    assert json.loads(_get(client, "/releaseservers/pinned")) == ["pinned"]


def test_no_capacity_is_503_and_nothing_left_behind(client: FlaskClient) -> None:
    free_one = int(_get(client, "/getavailablecount/centos"))
    wanted = free_one + 1
    assert wanted <= 100, "farm too big for this test"
    body = _get(client, f"/getservers/toomany?count={wanted}", 503)
    assert body.startswith("Error: No capacity is available!")
    assert str(wanted) in body
    wait_until(lambda: int(_get(client, "/getavailablecount/centos")) == free_one,
               timeout=20, what="reservations to be given back")
    _get(client, "/releaseservers/toomany", 404)


def test_health_and_metrics(client: FlaskClient) -> None:
    resp = client.get("/health")
    report = json.loads(resp.get_data(as_text=True))
    assert resp.status_code == 200, report
    assert report["status"] == "ok"
    assert client.get("/metrics").status_code == 200


def test_unreachable_host_is_named_in_header(client: FlaskClient, farm: Farm) -> None:
    down = farm.pools[1].master.name_label
    farm.set_unreachable(down, True)
    try:
        wait_until(lambda: client.get("/showall").headers.get("X-Dynvm-Unreachable") == "2",
                   timeout=30, what="xenhost2 to be reported unreachable")
        resp = client.get("/showall")
        assert resp.status_code == 200
        assert resp.headers["X-Dynvm-Unreachable"] == "2"
        assert list(json.loads(resp.get_data(as_text=True))) == ["1"]
    finally:
        farm.set_unreachable(down, False)
