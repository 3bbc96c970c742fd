"""Simulator test fixtures: a fresh farm per test (they start in milliseconds),
always on ephemeral loopback ports, so tests are xdist-safe."""

from __future__ import annotations

import xmlrpc.client
from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from dynvm.sim import Farm, Timing
from testbed.serving import wait_until

USER, PASSWORD = "root", "xenroot"


def fast_timing(**overrides: Any) -> Timing:
    timing = Timing(speed=1000.0)
    for k, v in overrides.items():
        setattr(timing, k, v)
    return timing


wait_for = wait_until


def login(url: str, **kwargs: Any) -> XenAPI.Session:
    session = XenAPI.Session(url, **kwargs)
    session.xenapi.login_with_password(USER, PASSWORD, "1.0", "dynvm-tests")
    return session


def raw_call(url: str, method: str, *params: Any) -> dict[str, Any]:
    """One XML-RPC call without XenAPI's session handling: the bare envelope."""
    proxy = xmlrpc.client.ServerProxy(url)
    with proxy:
        return getattr(proxy, method)(*params)


def raw_login(url: str) -> str:
    env = raw_call(url, "session.login_with_password", USER, PASSWORD)
    assert env["Status"] == "Success", env
    return env["Value"]


@pytest.fixture
def farm() -> Iterator[Farm]:
    with Farm.generate(pools=1, hosts=2, vms_per_host=2, timing=fast_timing()) as f:
        yield f


@pytest.fixture
def session(farm: Farm) -> Iterator[XenAPI.Session]:
    s = login(farm.pools[0].master.url)
    yield s
    try:
        s.xenapi.session.logout()
    except Exception:  # the test may have killed the session on purpose
        pass


@pytest.fixture
def x(session: XenAPI.Session) -> Any:
    """`session.xenapi`, for brevity."""
    return session.xenapi
