"""Sessions and pools: authentication, expiry, invalidation, HOST_IS_SLAVE,
host-local logins, and pool-level host operations."""

from __future__ import annotations

import time
from typing import Any

import pytest
import XenAPI

from dynvm.sim import Farm

from .conftest import PASSWORD, USER, fast_timing, login, raw_call, raw_login


def test_bad_credentials_fail_after_the_scaled_delay() -> None:
    timing = fast_timing(login_failure_delay=5.0)
    timing.speed = 25.0  # 0.2 s
    with Farm.generate(pools=1, hosts=1, timing=timing) as farm:
        url = farm.pools[0].master.url
        start = time.monotonic()
        env = raw_call(url, "session.login_with_password", USER, "wrong")
        assert time.monotonic() - start >= 0.19
        assert env == {"Status": "Failure",
                       "ErrorDescription": ["SESSION_AUTHENTICATION_FAILED", USER,
                                            "Authentication failure"]}
        with pytest.raises(XenAPI.Failure) as info:
            XenAPI.Session(url).xenapi.login_with_password("bob", PASSWORD)
        assert info.value.details[:2] == ["SESSION_AUTHENTICATION_FAILED", "bob"]


def test_logout_and_unknown_sessions_are_invalid(farm: Farm) -> None:
    url = farm.pools[0].master.url
    ref = raw_login(url)
    assert raw_call(url, "session.get_this_host", ref, ref)["Value"] == \
        farm.pools[0].master.ref
    assert raw_call(url, "session.logout", ref) == {"Status": "Success", "Value": ""}
    assert raw_call(url, "VM.get_all", ref)["ErrorDescription"] == ["SESSION_INVALID", ref]
    bogus = "OpaqueRef:00000000-0000-0000-0000-000000000000"
    assert raw_call(url, "VM.get_all", bogus)["ErrorDescription"] == ["SESSION_INVALID", bogus]


def test_invalidate_sessions_raw_error_and_client_relogin(farm: Farm) -> None:
    url = farm.pools[0].master.url
    ref = raw_login(url)
    session = login(url)
    old = session.handle
    farm.invalidate_sessions()
    assert raw_call(url, "pool.get_all", ref)["ErrorDescription"] == ["SESSION_INVALID", ref]
    # XenAPI.Session logs in again by itself on SESSION_INVALID and retries.
    assert len(session.xenapi.pool.get_all()) == 1
    assert session.handle != old
    assert farm.call_counts()[farm.pools[0].master.name_label][
        "session.login_with_password"] == 3


def test_sessions_expire_when_idle() -> None:
    timing = fast_timing(session_idle_timeout=3600.0)
    timing.speed = 1.0
    with Farm.generate(pools=1, hosts=1, timing=timing) as farm:
        url = farm.pools[0].master.url
        ref = raw_login(url)
        for _ in range(3):  # used within the limit: alive
            assert raw_call(url, "pool.get_all", ref)["Status"] == "Success"
        # Any idle time is now longer than the limit (the limit is read at each use).
        farm.timing.session_idle_timeout = 0.0
        assert raw_call(url, "pool.get_all", ref)["ErrorDescription"] == ["SESSION_INVALID", ref]
        assert ref not in farm.pools[0].db.tables["session"]


def test_member_answers_host_is_slave_and_client_follows(farm: Farm) -> None:
    pool = farm.pools[0]
    member = next(h for h in pool.hosts if not h.is_master)
    env = raw_call(member.url, "session.login_with_password", USER, PASSWORD)
    assert env == {"Status": "Failure",
                   "ErrorDescription": ["HOST_IS_SLAVE", pool.master.address]}
    with pytest.raises(XenAPI.Failure) as info:
        XenAPI.Session(member.url).xenapi.login_with_password(USER, PASSWORD)
    master = login("http://" + info.value.details[1])
    assert master.xenapi.pool.get_master(master.xenapi.pool.get_all()[0]) == pool.master.ref
    # A pool session used on a member is refused too.
    ref = raw_login(pool.master.url)
    assert raw_call(member.url, "VM.get_all", ref)["ErrorDescription"] == [
        "HOST_IS_SLAVE", pool.master.address]


def test_slave_local_login_on_member(farm: Farm) -> None:
    pool = farm.pools[0]
    member = next(h for h in pool.hosts if not h.is_master)
    session = XenAPI.Session(member.url)
    session.slave_local_login_with_password(USER, PASSWORD)
    x = session.xenapi
    assert member.ref in x.host.get_all()
    assert x.host.get_name_label(member.ref) == member.name_label
    local = session.handle
    session.xenapi.session.logout()  # XenAPI uses session.local_logout here
    assert raw_call(member.url, "host.get_all", local)["ErrorDescription"] == [
        "SESSION_INVALID", local]
    counts = farm.call_counts()[member.name_label]
    assert counts["session.slave_local_login_with_password"] == 1
    assert counts["session.local_logout"] == 1
    env = raw_call(member.url, "session.slave_local_login_with_password", USER, "bad")
    assert env["ErrorDescription"][0] == "SESSION_AUTHENTICATION_FAILED"


def test_designate_new_master_moves_host_is_slave(farm: Farm, x: Any) -> None:
    pool = farm.pools[0]
    old, new = pool.master, next(h for h in pool.hosts if not h.is_master)
    x.pool.designate_new_master(new.ref)
    assert pool.master is new
    assert raw_call(old.url, "session.login_with_password", USER, PASSWORD)[
        "ErrorDescription"] == ["HOST_IS_SLAVE", new.address]
    s = login(new.url)
    assert s.xenapi.pool.get_master(s.xenapi.pool.get_all()[0]) == new.ref


def test_ha_enable_disable_errors(farm: Farm, x: Any) -> None:
    pool = x.pool.get_all()[0]
    with pytest.raises(XenAPI.Failure) as info:
        x.pool.disable_ha()
    assert info.value.details == ["HA_NOT_ENABLED"]
    x.pool.enable_ha(x.SR.get_by_name_label("HA heartbeat"), {})
    assert x.pool.get_ha_enabled(pool) is True
    for call, args in ((x.pool.enable_ha, ([], {})),
                       (x.pool.designate_new_master, (x.host.get_all()[1],))):
        with pytest.raises(XenAPI.Failure) as info:
            call(*args)
        assert info.value.details == ["HA_IS_ENABLED"]
    x.pool.disable_ha()
    assert x.pool.get_ha_enabled(pool) is False
    url = farm.pools[0].master.url
    assert raw_call(url, "pool.ha_enable", raw_login(url), [], {})[
        "ErrorDescription"][0] == "MESSAGE_METHOD_UNKNOWN"
