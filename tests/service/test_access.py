"""Teams sharing one farm: who may do what, through the real service and the simulator.

Each defect of the issue has its test here: another team's token must never
re-expire or destroy a team's VMs, whatever the spelling of the request; the
operator and dashboard routes need a token (an admin's to change the farm);
every HTML answer forbids inline script and framing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from dynvm.api import create_app
from dynvm.core.services import Dynvm
from dynvm.sim import Farm
from tests.service.conftest import FarmProbe, dynvm_on, write_ini
from tests.support.auth import ADMIN, OTHER, OWNER, auth_section, bearer, make_tokens


@pytest.fixture(params=["mutating", "all"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def svc(tmp_path: Path, farm: Farm, clean_farm: dict, mode: str) -> Iterator[Dynvm]:
    with dynvm_on(write_ini(tmp_path, farm, extra=auth_section(mode))) as s:
        yield s


@pytest.fixture
def api(svc: Dynvm) -> FlaskClient:
    return create_app(service=svc).test_client()


@pytest.fixture
def tok(svc: Dynvm) -> dict[str, str]:
    return make_tokens(svc)


def build(api: FlaskClient, secret: str, name: str, count: int) -> list[str]:
    r = api.get(f"/getservers/{name}?os=centos&count={count}&format=detailed",
                headers=bearer(secret))
    assert r.status_code == 200, r.text
    return sorted(r.json or [])


def leases(svc: Dynvm) -> dict[str, tuple[str, float]]:
    return {lease.name: (lease.owner, lease.expires) for lease in svc.ctx.store.leases.find()}


# -- 1. the legacy owner check sees what the route acts on ---------------------------------

BYPASSES = ["/setexpiry/tav/1?count=%2B3", "/setexpiry/tav/1?count=%203",
            "/setexpiry/tav/1?count=3%20", "/releaseservers/tav?count=%203",
            "/releaseservers/tav?count=%2B3", "/releaseservers/tav?count=03",
            "/releaseservers/tbv/available", "/releaseservers/tav/available",
            "/setexpiry/tav/1?count=%2B3&from=created"]


def test_another_teams_token_cannot_touch_a_teams_vms(api, svc, tok, probe: FarmProbe) -> None:
    build(api, tok[OWNER], "tav", 3)
    build(api, tok[OWNER], "tbv", 2)
    before = leases(svc)
    assert set(before) == {"tav1", "tav2", "tav3", "tbv1", "tbv2"}
    vms = {r["uuid"] for r in probe.vms_named("t")}
    for url in BYPASSES:
        hows: list[dict[str, Any]] = [{"headers": bearer(tok[OTHER])},
                                      {"query": f"token={tok[OTHER]}"}]
        for how in hows:
            full = url + (("&" if "?" in url else "?") + how["query"] if "query" in how else "")
            r = api.get(full, headers=how.get("headers", {}))
            assert r.status_code == 403, (url, r.status_code, r.text)
            assert "belongs to another owner" in r.text
            assert leases(svc) == before, url  # nothing re-expired, nothing released
    assert {r["uuid"] for r in probe.vms_named("t")} == vms  # every VM still runs
    # The owner itself (and an admin) may, with the same spellings.
    r = api.get("/setexpiry/tav/5?count=%2B3", headers=bearer(tok[OWNER]))
    assert (r.status_code, r.json) == (200, ["tav1", "tav2", "tav3"])
    r = api.get("/releaseservers/tbv/available", headers=bearer(tok[OWNER]))
    assert (r.status_code, r.json) == (200, ["tbv1", "tbv2"])
    r = api.get("/releaseservers/tav?count=%203", headers=bearer(tok[ADMIN]))
    assert (r.status_code, r.json) == (200, ["tav1", "tav2", "tav3"])
    assert svc.ctx.store.leases.find() == [] and probe.vms_named("t") == []


def test_one_foreign_vm_in_a_prefix_refuses_the_whole_release(api, svc, tok) -> None:
    build(api, tok[OTHER], "mix", 1)  # team-b's "mix"
    r = api.get("/getservers/mix2?os=centos", headers=bearer(tok[OWNER]))
    assert r.status_code == 200, r.text
    r = api.get("/getservers/mix3?os=centos", headers=bearer(tok[OTHER]))
    assert r.status_code == 200, r.text
    before = leases(svc)
    r = api.get("/releaseservers/mix/available", headers=bearer(tok[OTHER]))
    assert r.status_code == 403 and "mix2" in r.text
    assert leases(svc) == before  # not even team-b's own mix3 went
    r = api.get("/releaseservers/mix3", headers=bearer(tok[OTHER]))
    assert (r.status_code, r.json) == (200, ["mix3"])


# -- 2. operator and dashboard routes need a token -------------------------------------------

def drained(svc: Dynvm, ref: int) -> bool:
    from dynvm.core.maintenance import state

    return f"{ref}" in state.placement_blocked(svc.ctx.store)


def test_operator_routes_need_an_admin_token(api, svc, tok) -> None:
    from dynvm.core.maintenance import state

    for who, status in ((None, 401), (tok[OWNER], 403), ("dvm_wrong", 401)):
        h = bearer(who) if who else {}
        assert api.post("/hosts/1/drain", headers=h).status_code == status
        assert not drained(svc, 1)
        state.set_drain(svc.ctx.store, 2, True, "test")
        assert api.post("/hosts/2/undrain", headers=h).status_code == status
        assert drained(svc, 2)
        state.set_drain(svc.ctx.store, 2, False, "test")
        r = api.post("/maintenance/1", json={"execute": True}, headers=h)
        assert r.status_code == status, r.text
        assert svc.ctx.store.locks.holder(state.lock_name(1)) is None  # no run started
        assert state.all_status(svc.ctx.store, [1, 2]) == {}
    admin = bearer(tok[ADMIN])
    r = api.post("/hosts/1/drain", headers=admin)
    assert r.status_code == 200 and r.json["drained"] is True and drained(svc, 1)
    assert api.post("/hosts/1/undrain", headers=admin).status_code == 200
    assert not drained(svc, 1)
    plan = api.post("/maintenance/1", json={"execute": False}, headers=admin)
    assert plan.status_code in (200, 409) and "plan" in plan.json  # a plan, nothing run
    # Reading the hosts and maintenance status takes any valid token.
    assert api.get("/hosts").status_code == 401
    assert api.get("/hosts", headers=bearer(tok[OWNER])).status_code == 200
    assert api.get("/maintenance", headers=bearer(tok[OWNER])).status_code == 200


DASHBOARD = ["/", "/ui/fragments", "/ui/api/vms", "/ui/api/history", "/ui/api/history/stats",
             "/ui/history.csv", "/ui/api/requests", "/ui/api/hosts", "/ui/api/capacity",
             "/ui/api/warmpools"]


def test_dashboard_needs_a_token_and_shows_an_owner_only_its_own(api, svc, tok) -> None:
    a_ips = build(api, tok[OWNER], "dsa", 2)
    b_ips = build(api, tok[OTHER], "dsb", 1)
    assert api.get("/releaseservers/dsa2", headers=bearer(tok[OWNER])).status_code == 200
    for url in DASHBOARD:
        r = api.get(url)
        assert r.status_code == 401, url
        for ip in a_ips + b_ips:
            assert ip not in r.text
        assert "dsa" not in r.text and "dsb" not in r.text and OWNER not in r.text
    page = api.get("/")
    assert page.mimetype == "text/html" and 'id="signin-form"' in page.text

    def seen(secret: str) -> dict[str, set[str]]:
        h = bearer(secret)
        vms = {v["name"] for v in api.get("/ui/api/vms", headers=h).json["vms"]}
        hist = {d["name"] for d in api.get("/ui/api/history", headers=h).json["docs"]}
        csv = api.get("/ui/history.csv", headers=h).text
        reqs = api.get("/ui/api/requests", headers=h).json
        names = {r["name"] for r in reqs["running"] + reqs["recent"]}
        page = api.get("/", headers=h).text
        return {"vms": vms, "history": hist, "requests": names,
                "csv": {n for n in ("dsa1", "dsa2", "dsb") if n in csv},
                "page": set(re.findall(r'<tr class="vm [^"]*" data-name="([^"]+)"', page))}

    mine = seen(tok[OWNER])
    assert mine["vms"] == {"dsa1"} and mine["page"] == {"dsa1"}
    assert mine["history"] == mine["csv"] == {"dsa1", "dsa2"}
    assert mine["requests"] == {"dsa"}
    theirs = seen(tok[OTHER])
    assert theirs["vms"] == theirs["history"] == theirs["csv"] == {"dsb"}
    everyone = seen(tok[ADMIN])
    assert {"dsa1", "dsb"} <= everyone["vms"]
    assert everyone["history"] >= {"dsa1", "dsa2", "dsb"}
    # an owner still sees the farm's totals and capacity
    hosts = api.get("/ui/api/hosts", headers=bearer(tok[OWNER])).json
    assert hosts["totals"]["vms"] >= 2 and hosts["capacity"]


def sign_in(api: FlaskClient, secret: str, nxt: str = "/") -> str:
    form = api.get("/ui/signin")
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text).group(1)
    r = api.post("/ui/signin", data={"nonce": nonce, "token": secret, "next": nxt})
    assert r.status_code == 303 and r.headers["Location"] == nxt, r.text
    return r.headers.getlist("Set-Cookie")[0]


def test_browser_sign_in_keeps_the_token_in_a_strict_cookie(api, svc, tok) -> None:
    cookie = sign_in(api, tok[ADMIN])
    assert cookie.startswith("dynvm_token=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here; over https it is Secure, below
    page = api.get("/")
    assert page.status_code == 200 and 'id="signed-in"' in page.text
    assert api.get("/ui/api/vms").status_code == 200
    # No state change on the cookie alone: a CSRF token must come with it.
    assert api.post("/hosts/1/drain").status_code == 401
    assert not drained(svc, 1)
    assert api.get("/getservers/csrf?os=centos").status_code == 401  # a legacy write is one too
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)
    assert api.post("/hosts/1/drain", headers={"X-Dynvm-CSRF": "0" * 32}).status_code == 401
    assert api.post("/hosts/1/drain", headers={"X-Dynvm-CSRF": csrf}).status_code == 200
    assert api.post("/hosts/1/undrain", headers={"X-Dynvm-CSRF": csrf}).status_code == 200
    # v1 takes bearer tokens only
    assert api.get("/api/v1/vms").status_code == 401
    # Signing out needs the page's CSRF token too, then the cookie is gone.
    assert api.post("/ui/signout").status_code == 403
    assert api.post("/ui/signout", data={"csrf": csrf}).status_code == 303
    assert api.get("/ui/api/vms").status_code == 401


def test_sign_in_refuses_a_bad_token_or_a_forged_form(api, tok) -> None:
    form = api.get("/ui/signin")
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text).group(1)
    bad = api.post("/ui/signin", data={"nonce": nonce, "token": "dvm_wrong"})
    assert bad.status_code == 401 and "not valid" in bad.text and "dvm_wrong" not in bad.text
    other = create_app(service=api.application.extensions["dynvm"]).test_client()
    forged = other.post("/ui/signin", data={"nonce": nonce, "token": tok[OWNER]})
    assert forged.status_code == 400  # the nonce without its cookie: another site's form
    assert not forged.headers.getlist("Set-Cookie") or \
        all(not c.startswith("dynvm_token=") for c in forged.headers.getlist("Set-Cookie"))
    nonce = re.search(r'name="nonce" value="([^"]+)"', bad.text).group(1)  # each form its own
    away = api.post("/ui/signin", data={"nonce": nonce, "token": tok[OWNER],
                                        "next": "//evil.example/"})
    assert away.status_code == 303 and away.headers["Location"] == "/"


def test_cookie_is_secure_over_https(svc, tok) -> None:
    api = create_app(service=svc).test_client()
    form = api.get("/ui/signin", base_url="https://dynvm.test")
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text).group(1)
    r = api.post("/ui/signin", base_url="https://dynvm.test",
                 data={"nonce": nonce, "token": tok[OWNER]})
    assert r.status_code == 303
    assert "Secure" in r.headers.getlist("Set-Cookie")[0]


# -- 3. headers on HTML answers -----------------------------------------------------------------

def test_every_html_answer_forbids_inline_script_framing_and_sniffing(api, tok) -> None:
    app = api.application
    pages = [rule.rule for rule in app.url_map.iter_rules()
             if "GET" in (rule.methods or ()) and not rule.arguments]
    html = 0
    for url in pages:
        for h in ({}, bearer(tok[ADMIN])):
            r = api.get(url, headers=h)
            if r.mimetype != "text/html":
                continue
            html += 1
            csp = r.headers.get("Content-Security-Policy", "")
            directives = dict((d.strip().split(" ", 1) + [""])[:2] for d in csp.split(";") if d)
            assert directives.get("frame-ancestors") == "'none'", url
            assert directives.get("script-src") == "'self'", url
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, url
            assert r.headers.get("X-Content-Type-Options") == "nosniff", url
            assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", r.text), f"inline script: {url}"
            assert not re.search(r"\son[a-z]+=", r.text), f"inline handler: {url}"
    assert html >= 4  # /, the sign-in form (and / as 401), /api/v1/docs
    plain = api.get("/showall", headers=bearer(tok[ADMIN]))  # not HTML: nosniff all the same
    assert plain.headers.get("X-Content-Type-Options") == "nosniff"
