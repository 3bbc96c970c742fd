"""Every bad input is answered 400 with the parameter named, and the core is never asked."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from dynvm.api.fields import parse_bool
from dynvm.api.validation import (
    GetServersParams,
    InvalidParam,
    SetExpiryParams,
    parse_params,
)
from dynvm.core.services import Target
from tests.api.stub import StubCore

LONG = "a" * 300

# (url, parameter the message must name)
BAD_REQUESTS = [
    ("/getservers/t?count=0", "count"),
    ("/getservers/t?count=-1", "count"),
    ("/getservers/t?count=abc", "count"),
    ("/getservers/t?count=100000", "count"),
    ("/getservers/t?count=1.5", "count"),
    ("/getservers/t?count=%D9%A1", "count"),  # ARABIC-INDIC DIGIT ONE: int() would take it
    ("/getservers/t?count=%EF%BC%93", "count"),  # FULLWIDTH DIGIT THREE
    ("/getservers/t?count=1_0", "count"),
    ("/getservers/t?count=default", "count"),  # the seed crashed on int('default')
    ("/getservers/t?format=xml", "format"),
    ("/getservers/t?xhostref=99", "xhostref"),
    ("/getservers/t?xhostref=abc", "xhostref"),
    ("/getservers/t?xhostref=-1", "xhostref"),
    ("/getservers/t?os=solaris", "os"),
    ("/getservers/t?os=../etc", "os"),
    ("/getservers/t?mem=abc", "mem"),
    ("/getservers/t?mem=-4294967296", "mem"),
    ("/getservers/t?mem=4", "mem"),
    ("/getservers/t?mem=99999999999999999999", "mem"),
    ("/getservers/t?cpus=0", "cpus"),
    ("/getservers/t?cpus=100000", "cpus"),
    ("/getservers/t?cpus=two", "cpus"),
    ("/getservers/t?expiresin=-5", "expiresin"),
    ("/getservers/t?expiresin=99999999999", "expiresin"),
    ("/getservers/t?expiresin=soon", "expiresin"),
    ("/getservers/t?allornone=maybe", "allornone"),
    ("/getservers/t?cpus=%D9%A8", "cpus"),
    ("/getservers/t?cpus=defaults", "cpus"),
    ("/getservers/t?expiresin=default", "expiresin"),
    ("/getservers/t?xhostref=%DB%B1", "xhostref"),
    ("/getservers/t?checkvms=on", "checkvms"),
    ("/getservers/t?ignorelabels=2", "ignorelabels"),
    ("/getservers/t?labels=a;b", "labels"),
    ("/getservers/t?labels=a,b%20c", "labels"),
    ("/getservers/t?networkid=%00x", "networkid"),
    ("/getservers/a..b", "name"),
    ("/getservers/..", "name"),
    ("/getservers/a%20b", "name"),
    ("/getservers/-ab", "name"),
    ("/getservers/a$b", "name"),
    (f"/getservers/{LONG}", "name"),
    ("/getservers/" + "a" * 65, "name"),
    ("/getservers/a/b", "name"),
    ("/getservers/a%2Fb", "name"),
    ("/getservers/", "name"),
    ("/getservers", "name"),
    ("/getavailablecount/solaris", "os"),
    ("/getavailablecount?os=solaris", "os"),
    ("/getavailablecount/centos?alllabels=perhaps", "alllabels"),
    ("/getavailablecount/centos?ignorelabels=x", "ignorelabels"),
    ("/getavailablecount/centos?labels=%2C%2C!", "labels"),
    ("/showall/solaris", "os"),
    ("/showall?ignorelabels=sure", "ignorelabels"),
    ("/releaseservers/a..b", "name"),
    ("/releaseservers/a/b/c", "name"),
    (f"/releaseservers/{LONG}", "name"),
    ("/releaseservers/t?count=0", "count"),
    ("/releaseservers/t?count=abc", "count"),
    ("/releaseservers/t/bad%20state", "state"),
    ("/releaseservers/t/", "state"),
    ("/releaseservers", "name"),
    ("/setexpiry/t", "minutes"),
    ("/setexpiry/t/abc", "minutes"),
    ("/setexpiry/t/-5", "minutes"),
    ("/setexpiry/t/99999999999", "minutes"),
    ("/setexpiry/t/5?from=yesterday", "from"),
    ("/setexpiry/t/5?count=-2", "count"),
    ("/setexpiry/t/%D9%A5", "minutes"),
    ("/releaseservers/t?count=%D9%A2", "count"),
    ("/setexpiry/a/b/5", "name"),
    (f"/setexpiry/{LONG}/5", "name"),
]


@pytest.mark.parametrize(("url", "param"), BAD_REQUESTS)
def test_bad_input_is_400_naming_the_parameter(
    client: FlaskClient, core: StubCore, url: str, param: str
) -> None:
    resp = client.get(url)
    body = resp.get_data(as_text=True)
    assert resp.status_code == 400, (url, resp.status_code, body)
    assert f"'{param}'" in body, body
    assert body.startswith("Error: bad parameter"), body
    assert "\n" not in body.strip()
    assert resp.mimetype == "text/plain"
    assert core.core_calls() == [], f"{url} reached the core: {core.core_calls()}"


@pytest.mark.parametrize("word", ["true", "TRUE", "1", "yes", "Yes"])
def test_true_words(word: str) -> None:
    assert parse_bool(word) is True


@pytest.mark.parametrize("word", ["false", "False", "0", "no", "NO"])
def test_false_words(word: str) -> None:
    assert parse_bool(word) is False


def test_good_getservers_parameters_reach_the_core_as_typed_request(
    client: FlaskClient, core: StubCore
) -> None:
    url = ("/getservers/job-42.a?count=3&os=Windows&cpus=4&mem=4294967296&expiresin=90"
           "&labels=perf,%20fast&ignorelabels=no&xhostref=2&allornone=false&networkid=eth1"
           "&checkvms=yes&format=detailed&unknownparam=ignored")
    resp = client.get(url)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    [(name, req)] = [c for c in core.calls if c[0] == "get_servers"]
    assert req.name == "job-42.a"
    assert req.count == 3
    assert req.os == "windows"
    assert (req.cpus, req.mem_bytes, req.expires_in_minutes) == (4, 4294967296, 90)
    assert req.labels == frozenset({"perf", "fast"})
    assert req.ignore_labels is False
    assert req.xhostref == 2
    assert req.all_or_none is False
    assert req.network_id == "eth1"
    assert req.check_vms is True


def test_getservers_defaults(client: FlaskClient, core: StubCore) -> None:
    assert client.get("/getservers/t").status_code == 200
    [(_, req)] = [c for c in core.calls if c[0] == "get_servers"]
    assert (req.count, req.os, req.all_or_none, req.check_vms, req.xhostref) == (
        1, "centos", True, False, None)
    assert req.expires_in_minutes is None and req.mem_bytes is None and req.cpus is None


def test_count_bounds_are_inclusive() -> None:
    ctx = {"os_keys": {"centos"}, "host_refs": {1}}
    assert parse_params(GetServersParams, {"name": "t", "count": "1"}, ctx).count == 1
    assert parse_params(GetServersParams, {"name": "t", "count": "100"}, ctx).count == 100
    with pytest.raises(InvalidParam, match="count"):
        parse_params(GetServersParams, {"name": "t", "count": "101"}, ctx)


def test_name_of_64_characters_is_accepted_65_refused() -> None:
    ctx = {"os_keys": {"centos"}, "host_refs": {1}}
    assert parse_params(GetServersParams, {"name": "a" * 64}, ctx).name == "a" * 64
    with pytest.raises(InvalidParam, match="name"):
        parse_params(GetServersParams, {"name": "a" * 65}, ctx)


def test_setexpiry_parameters(client: FlaskClient, core: StubCore) -> None:
    core.existing.update({"t1", "t2"})
    resp = client.get("/setexpiry/t/30?from=created&count=2")
    assert resp.status_code == 200
    assert ("set_expiry", (Target.named("t", 2), 30, True)) in core.calls
    p = parse_params(SetExpiryParams, {"name": "t", "minutes": "0"})
    assert (p.minutes, p.base, p.count) == (0, "now", None)


def test_unknown_route_is_404_text_not_500(client: FlaskClient) -> None:
    resp = client.get("/nosuchthing")
    assert resp.status_code == 404
    assert resp.get_data(as_text=True) == "Error: no such route: /nosuchthing"


def test_wrong_method_is_405(client: FlaskClient, core: StubCore) -> None:
    resp = client.post("/getservers/t")
    assert resp.status_code == 405
    assert set(resp.headers["Allow"].split(", ")) == {"GET", "OPTIONS"}
    assert core.core_calls() == []


@pytest.mark.parametrize("url", ["/getservers/t", "/releaseservers/t", "/setexpiry/t/30",
                                 "/getservers", "/releaseservers/t/deleted"])
@pytest.mark.parametrize("method", ["HEAD", "POST", "PUT", "DELETE", "PATCH"])
def test_only_get_reaches_the_routes_that_create_or_destroy(
    client: FlaskClient, core: StubCore, url: str, method: str
) -> None:
    core.existing.add("t")
    resp = client.open(url, method=method)
    assert resp.status_code == 405, (method, url, resp.status_code)
    assert set(resp.headers["Allow"].split(", ")) == {"GET", "OPTIONS"}
    assert core.core_calls() == []
    assert "t" in core.existing


@pytest.mark.parametrize("url", ["/showall", "/getavailablecount/centos", "/health"])
def test_head_of_read_only_routes_still_answers(client: FlaskClient, url: str) -> None:
    resp = client.head(url)
    assert resp.status_code == 200
    assert resp.get_data() == b""


def test_seed_helper_values_mean_what_they_meant(client: FlaskClient, core: StubCore) -> None:
    """The seed's Jenkins helper: `cpus=default&mem=default`, empty values, os omitted."""
    resp = client.get("/getservers/seedjob?cpus=default&mem=DEFAULT&count=&format=&expiresin="
                      "&labels=&xhostref=&networkid=&allornone=&checkvms=&ignorelabels=")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_data(as_text=True) == '["10.0.0.1"]'
    [(_, req)] = [c for c in core.calls if c[0] == "get_servers"]
    assert (req.count, req.os, req.cpus, req.mem_bytes, req.expires_in_minutes) == (
        1, "centos", None, None, None)
    assert (req.all_or_none, req.check_vms, req.ignore_labels, req.xhostref, req.network_id,
            req.labels) == (True, False, False, None, None, frozenset())
    resp = client.get("/getservers/seedjob?count=%203&cpus=default&mem=default&os=")
    assert resp.status_code == 200
    assert core.calls[-1][1].count == 3


def test_seed_empty_values_on_every_legacy_route(client: FlaskClient, core: StubCore) -> None:
    core.existing.update({"t", "u"})
    assert client.get("/showall?labels=&ignorelabels=&os=").status_code == 200
    assert client.get("/getavailablecount?os=&labels=&alllabels=&ignorelabels=").status_code == 200
    assert client.get("/setexpiry/t/30?count=&from=").status_code == 200
    assert client.get("/releaseservers/t?count=").status_code == 200
    calls = [c for c in core.calls if c[0] not in ("os_keys", "host_refs")]
    assert calls == [
        ("show_all", (None, frozenset(), False)),
        ("available", ("centos", frozenset(), False)),
        ("set_expiry", (Target.named("t"), 30, False)),
        ("release_servers", (Target.named("t"), None)),
    ]


def test_ascii_digits_only_in_every_number() -> None:
    ctx = {"os_keys": {"centos"}, "host_refs": {1}}
    for bad in ("\u0661", "\uff13", "\u0e52", "1_0", "\u00b2", "0x10", "1e3"):
        with pytest.raises(InvalidParam, match="count"):
            parse_params(GetServersParams, {"name": "t", "count": bad}, ctx)
    assert parse_params(GetServersParams, {"name": "t", "count": "+7"}, ctx).count == 7


@pytest.mark.parametrize("raw", ["%0d%0aX-Forged:%20yes", "%1b[2J%1b[31m", "%00nul", "%e2%80%a8"])
def test_control_characters_never_echoed_raw(client: FlaskClient, raw: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    for url in (f"/getservers/t?os={raw}", f"/getservers/t?labels={raw}", f"/nosuch{raw}",
                f"/getservers/t?count={raw}", f"/setexpiry/t/{raw}"):
        resp = client.get(url)
        body = resp.get_data(as_text=True)
        assert resp.status_code in (200, 400, 404), (url, body)
        assert body.isprintable(), (url, body)
    for record in caplog.records:
        assert record.getMessage().isprintable(), record.getMessage()


def test_error_bodies_echo_at_most_about_100_characters(client: FlaskClient) -> None:
    junk = "Q" * 1500
    for url in (f"/getservers/t?os={junk}", f"/nosuch/{junk}", f"/getservers/{junk}",
                f"/setexpiry/{junk}/x/5", f"/getservers/t?labels={junk}"):
        body = client.get(url).get_data(as_text=True)
        assert body.count("Q") <= 100, (url[:40], len(body))
        assert "\n" not in body


def test_over_long_request_line_is_one_line_414(client: FlaskClient, core: StubCore) -> None:
    resp = client.get("/getservers/t?pad=" + "x" * 5000)
    assert resp.status_code == 414
    body = resp.get_data(as_text=True)
    assert body.startswith("Error: request line too long") and "\n" not in body
    assert core.core_calls() == []


@pytest.mark.parametrize("url", ["/getservers/t", "/getavailablecount"])
def test_default_os_not_served_is_400(client: FlaskClient, core: StubCore, url: str) -> None:
    core.oses = {"windows"}
    resp = client.get(url)
    assert resp.status_code == 400
    assert resp.get_data(as_text=True).startswith("Error: bad parameter 'os': unknown OS 'centos'")
    assert core.core_calls() == []
