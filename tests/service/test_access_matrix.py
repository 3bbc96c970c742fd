"""Every route × `[auth] legacy` mode × caller, from the app's own route table.

The routes come from `app.url_map`, so a route added later is in the matrix
at once. What each caller may do is written here a second time, as the
README's security section states it (MODEL), and compared with what the
service answers. Each request is harmless when allowed (an unknown OS, host
or name, a plan instead of a run), so allowing and refusing are told apart by
the status alone: 401 no or bad token, 403 not allowed, anything else served.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from dynvm.api import access, create_app
from dynvm.sim import Farm
from tests.service.conftest import dynvm_on, wait_until, write_ini
from tests.support.auth import (
    ADMIN,
    MODES,
    OTHER,
    OWNER,
    auth_section,
    bearer,
    make_tokens,
)

CALLERS = ("none", "owner", "other owner", "admin")
A = access.Access

# Who gets past the route's gate, per level and mode: the README's security model.
ANY = set(CALLERS)
TOKENS = {"owner", "other owner", "admin"}
MODEL: dict[access.Access, dict[str, set[str]]] = {
    A.PUBLIC: {"open": ANY, "mutating": ANY, "all": ANY},
    A.LEGACY_READ: {"open": ANY, "mutating": ANY, "all": TOKENS},
    A.LEGACY_WRITE: {"open": ANY, "mutating": TOKENS, "all": TOKENS},
    A.TOKEN: {"open": ANY, "mutating": TOKENS, "all": TOKENS},
    A.ADMIN: {"open": ANY, "mutating": {"admin"}, "all": {"admin"}},
    A.API: {"open": TOKENS, "mutating": TOKENS, "all": TOKENS},
}

# The only routes anyone may call in every mode.
PUBLIC = {"ops.health", "ops.prometheus", "probes.live", "probes.ready", "v1.openapi_json",
          "v1.docs_page", "dashboard.static", "signin.show", "signin.sign_in",
          "signin.sign_out"}
VM = "mxa"  # team-a's VM, built through v1 before the matrix runs

# A value for every path argument of the route table (a new argument must be added here).
ARGS = {"os": "centos", "name": "nosuch", "rest": "nosuch", "ref": "99",
        "request_id": "nosuch", "filename": "dashboard.css", "ident": "nosuch",
        "snapshot": "nosuch"}
# Requests that a caller allowed through the gate can make without changing anything.
SPECIAL: dict[tuple[str, str], dict[str, Any]] = {
    ("legacy.getservers", "GET"): {"query": "os=nosuch-os"},  # 400 once allowed
    ("legacy.setexpiry", "GET"): {"args": {"rest": f"{VM}/600"}, "vm": "legacy"},
    ("maintenance.reboot", "POST"): {"json": {"execute": False}},
    ("v1.create_request", "POST"): {"json": {}},  # 422 once allowed
    ("v1.get_vm", "GET"): {"args": {"name": VM}, "vm": "v1"},
    ("v1.extend_vm", "POST"): {"args": {"name": VM}, "json": {"minutes": 60}, "vm": "v1"},
}


def routes(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, URL) of every rule and method of the app (HEAD/OPTIONS are Flask's)."""
    out = []
    for rule in app.url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            special = SPECIAL.get((rule.endpoint, method), {})
            missing = rule.arguments - set(ARGS) - set(special.get("args", {}))
            assert not missing, f"{rule.rule}: add a sample value for {missing} to ARGS"
            values = {k: ARGS.get(k) for k in rule.arguments} | special.get("args", {})
            url = rule.build(values, append_unknown=False)[1]
            if "query" in special:
                url += "?" + special["query"]
            out.append((rule.endpoint, method, url))
    return out


def expected(level: access.Access, mode: str, caller: str, vm: str | None) -> str:
    if caller not in MODEL[level][mode]:
        return "401" if caller == "none" or level is not A.ADMIN else "403"
    if vm and caller == "other owner":
        if vm == "v1":
            return "404"  # another owner's VM is hidden
        if mode != "open":
            return "403"  # a legacy caller with a token is told it is not theirs
    return "served"


def matches(want: str, status: int, vm: str | None) -> bool:
    """Served: past the gate, and no server error (on team-a's VM: done, 200)."""
    if want != "served":
        return str(status) == want
    return status == 200 if vm else status not in (401, 403) and status < 500


def test_every_route_declares_its_access() -> None:
    from tests.api.stub import StubCore

    app = create_app(service=StubCore())  # type: ignore[arg-type]
    declared = {rule.endpoint: access.level_of(app, rule.endpoint)
                for rule in app.url_map.iter_rules()}
    assert {e for e, level in declared.items() if level is A.PUBLIC} == PUBLIC
    for rule in app.url_map.iter_rules():
        fn = app.view_functions[rule.endpoint]
        assert rule.endpoint in access.FLASK_VIEWS or hasattr(fn, access.ATTR), \
            f"{rule.rule} declares no access level"
        if rule.endpoint.startswith("v1.") and rule.endpoint not in PUBLIC:
            assert declared[rule.endpoint] is A.API, rule.rule
        changes = (rule.methods or set()) - {"GET", "HEAD", "OPTIONS"}
        if changes and not rule.endpoint.startswith(("v1.", "signin.")):
            assert declared[rule.endpoint] is A.ADMIN, f"{rule.rule} changes the farm"


def test_an_undeclared_route_fails_closed(tmp_path: Path, farm: Farm, clean_farm) -> None:
    from flask import Blueprint

    with dynvm_on(write_ini(tmp_path, farm, extra=auth_section("mutating"))) as svc:
        app = create_app(service=svc)
        extra = Blueprint("added_later", __name__)
        extra.add_url_rule("/added-later", "view", lambda: "done")
        app.register_blueprint(extra)
        tok = make_tokens(svc)
        c = app.test_client()
        assert access.level_of(app, "added_later.view") is A.ADMIN
        assert c.get("/added-later").status_code == 401
        assert c.get("/added-later", headers=bearer(tok[OWNER])).status_code == 403
        assert c.get("/added-later", headers=bearer(tok[ADMIN])).text == "done"


def _client_with_vm(svc: Any, tok: dict[str, str]) -> FlaskClient:
    c = create_app(service=svc).test_client()
    r = c.post("/api/v1/requests", json={"os": "centos", "name": VM}, headers=bearer(tok[OWNER]))
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    wait_until(lambda: c.get(loc + "?wait=5", headers=bearer(tok[OWNER])).json["state"]
               != "running", timeout=120, what="team-a's VM")
    return c


@pytest.mark.parametrize("mode", MODES)
def test_route_mode_caller_matrix(mode: str, tmp_path: Path, farm: Farm, clean_farm) -> None:
    with dynvm_on(write_ini(tmp_path, farm, extra=auth_section(mode))) as svc:
        tok = make_tokens(svc)
        c = _client_with_vm(svc, tok)
        headers = {"none": {}, "owner": bearer(tok[OWNER]), "other owner": bearer(tok[OTHER]),
                   "admin": bearer(tok[ADMIN])}
        table = routes(c.application)
        assert len(table) >= 45
        wrong = []
        for endpoint, method, url in table:
            level = access.level_of(c.application, endpoint)
            special = SPECIAL.get((endpoint, method), {})
            for caller in CALLERS:
                r = c.open(url, method=method, headers=headers[caller], json=special.get("json"))
                want = expected(level, mode, caller, special.get("vm"))
                if not matches(want, r.status_code, special.get("vm")):
                    wrong.append(f"{method} {url} [{level.value}] {caller}: "
                                 f"want {want}, got {r.status_code} {r.text[:80]!r}")
        assert not wrong, f"{len(wrong)} answers differ from the model:\n" + "\n".join(wrong)
        # what the allowed calls did is what was asked, and no more
        (lease,) = svc.ctx.store.leases.find(name=VM)
        assert lease.owner == OWNER and lease.state == "active"
