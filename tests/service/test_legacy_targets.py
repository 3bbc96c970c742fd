"""Property: for any legacy request the route accepts, the owner check covers exactly the
VMs the route then acts on.

Requests are generated with every spelling the input rules accept (`+3`,
` 3`, `03`, `3 `, `/available`, another state...) and some they refuse. The
names a request means are worked out here on their own, from the README's
rules, and compared with what the service did through the simulator: team-b's
token is refused (403, nothing changed) as soon as one of those VMs is team-a's,
and when it is allowed exactly those VMs change, no other.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynvm.api import create_app
from dynvm.sim import Farm
from tests.service.conftest import dynvm_on, write_ini
from tests.support.auth import ADMIN, OTHER, OWNER, auth_section, bearer, make_tokens

NAMES = ["tav", "tbv", "bx", "tav1", "tb", "bx1", "nosuch", "t"]
VMS = {OWNER: [("tav", 3), ("tbv", 2)], OTHER: [("bx", 2)]}


@st.composite
def counts(draw: st.DrawFn) -> tuple[str | None, int | None]:
    """(the raw value sent or None for absent, the count it means or None if refused)."""
    kind = draw(st.sampled_from(["absent", "empty", "number", "junk"]))
    if kind == "absent":
        return None, None
    if kind == "empty":
        return "", None  # as absent: the seed read `count=` as not given
    if kind == "junk":
        return draw(st.sampled_from(["abc", "\u0663", "3x", "1_0", "1.0", "0x3"])), -1
    n = draw(st.integers(-1, 5))
    sign = "-" if n < 0 else draw(st.sampled_from(["", "+"]))
    digits = "0" * draw(st.integers(0, 2)) + str(abs(n))
    text = draw(st.sampled_from(["", " "])) + sign + digits + draw(st.sampled_from(["", " "]))
    return text, n if 1 <= n <= 100 else -1


def meant(route: str, name: str, count: int | None, state: str | None,
          existing: set[str]) -> set[str]:
    """The VMs a request names, by the README's rules."""
    if route == "releaseservers" and state == "available" and count is None:
        return {n for n in existing if re.fullmatch(re.escape(name) + "[0-9]+", n)}
    wanted = {name} if count in (None, 1) else {f"{name}{i}" for i in range(1, count + 1)}
    return wanted & existing


def test_the_owner_check_covers_exactly_what_the_route_acts_on(tmp_path: Path, farm: Farm,
                                                                clean_farm) -> None:
    with dynvm_on(write_ini(tmp_path, farm, extra=auth_section("mutating"))) as svc:
        tok = make_tokens(svc)
        api = create_app(service=svc).test_client()
        for owner, builds in VMS.items():
            for name, n in builds:
                r = api.get(f"/getservers/{name}?os=centos&count={n}", headers=bearer(tok[owner]))
                assert r.status_code == 200, r.text
        owners = {lease.name: lease.owner for lease in svc.ctx.store.leases.find()}
        assert len(owners) == 7

        def state() -> dict[str, float]:
            return {lease.name: lease.expires for lease in svc.ctx.store.leases.find()}

        @settings(max_examples=150, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(route=st.sampled_from(["setexpiry", "releaseservers"]),
               name=st.sampled_from(NAMES), count=counts(),
               state_=st.sampled_from([None, "available", "failed"]),
               who=st.sampled_from([OTHER, ADMIN]))
        def check(route: str, name: str, count: tuple[str | None, int | None],
                  state_: str | None, who: str) -> None:
            raw, n = count
            if route == "releaseservers" and who == ADMIN:
                who = OTHER  # an admin's release would destroy the VMs the next example needs
            path = f"/setexpiry/{name}/600" if route == "setexpiry" else \
                f"/releaseservers/{name}" + (f"/{state_}" if state_ else "")
            url = path + ("" if raw is None else f"?count={quote(raw, safe='')}")
            before = state()
            covered = meant(route, name, n, state_ if route == "releaseservers" else None,
                            set(before))
            foreign = {v for v in covered if owners[v] != who} if who != ADMIN else set()
            if route == "releaseservers" and covered and not foreign:
                return  # team-b releasing its own VMs: allowed, checked once below
            r = api.get(url, headers=bearer(tok[who]))
            after = state()
            changed = {v for v in before if after.get(v) != before[v]}
            if n == -1:
                assert r.status_code == 400 and not changed, (url, r.status_code, r.text)
            elif foreign:
                assert r.status_code == 403 and not changed, (url, r.status_code, r.text)
            elif not covered:
                assert r.status_code == 404 and not changed, (url, r.status_code, r.text)
            else:
                assert r.status_code == 200, (url, r.status_code, r.text)
                assert set(r.json or ()) == covered == changed, url

        check()
        # team-b releasing its own, by the prefix form: exactly bx1 and bx2 go
        r = api.get("/releaseservers/bx/available", headers=bearer(tok[OTHER]))
        assert (r.status_code, r.json) == (200, ["bx1", "bx2"])
        assert set(state()) == {"tav1", "tav2", "tav3", "tbv1", "tbv2"}
