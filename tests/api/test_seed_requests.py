"""The seed's remaining requests, at the HTTP layer: format=short, pools=, /available."""

from __future__ import annotations

from flask.testing import FlaskClient

from dynvm.core.services import Target
from tests.api.stub import StubCore


def test_format_short_is_the_servermanager_list(client: FlaskClient, core: StubCore) -> None:
    short = client.get("/getservers/fs?count=2&format=short")
    plain = client.get("/getservers/fp?count=2")
    assert short.status_code == plain.status_code == 200
    assert short.headers["Content-Type"] == plain.headers["Content-Type"] == "application/json"
    assert short.get_data(as_text=True) == '["10.0.0.1", "10.0.0.2"]'
    assert client.get("/getservers/fx?format=SHORT").status_code == 200
    bad = client.get("/getservers/fy?format=yaml")
    assert bad.status_code == 400 and "short" in bad.get_data(as_text=True)


def test_pools_reach_the_core_in_order(client: FlaskClient, core: StubCore) -> None:
    assert client.get("/getservers/p1?pools=regression,%2012hr,regression").status_code == 200
    req = [arg for name, arg in core.calls if name == "get_servers"][-1]
    assert req.static_pools == ("regression", "12hr")
    assert client.get("/getservers/p2").status_code == 200
    assert [arg for name, arg in core.calls if name == "get_servers"][-1].static_pools == ()
    bad = client.get("/getservers/p3?pools=ok,no/slash")
    assert bad.status_code == 400 and "'pools'" in bad.get_data(as_text=True)
    assert [name for name, _ in core.calls].count("get_servers") == 2  # nothing reached the core


def test_release_available_takes_every_numbered_vm(client: FlaskClient, core: StubCore) -> None:
    client.get("/getservers/job?count=3")
    client.get("/getservers/job")  # the bare prefix is not one of job<N>
    resp = client.get("/releaseservers/job/available")
    assert resp.status_code == 200
    assert resp.get_data(as_text=True) == '[\n  "job1",\n  "job2",\n  "job3"\n]'
    assert ("release_servers", (Target.every_numbered("job"), "available")) in core.calls
    resp = client.get("/releaseservers/job/available")
    assert (resp.status_code, resp.get_data(as_text=True)) == (404, "Error: VM job doesn't exist")
    client.get("/getservers/two")
    resp = client.get("/releaseservers/two/available?count=1")  # with count: the usual release
    assert resp.status_code == 200 and ("release_servers", (Target.named("two", 1), "available")) in core.calls
