"""Fixtures for the Xen layer: simulated farms over real HTTP XML-RPC."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from dynvm.config import HostConfig
from dynvm.sim import Farm
from dynvm.xen.pool import XenPoolClient
from testbed.serving import wait_until  # noqa: F401 (used by the tests)

SPEED = 300.0
LINUX_TEMPLATE = "tmpl-cnt7.7"
WINDOWS_TEMPLATE = "tmpl-win16dc - PATCHED (1)"
STORAGE = "Local storage"


def host_config(farm: Farm, *, ref: int = 1, pool: int = 0, url: str | None = None,
                **overrides: Any) -> HostConfig:
    """A [xenhostN] pointing at a farm's pool master (or at `url`)."""
    master = farm.pools[pool].master
    url = url or master.url
    fields: dict[str, Any] = dict(
        ref=ref, name=url, url=url, user="root", password="xenroot",
        storage_name=STORAGE, connect_timeout=2.0, call_timeout=10.0,
        ca_file=farm.ca_file,
    )
    fields.update(overrides)
    return HostConfig(**fields)


def xapi_calls(farm: Farm, *, ignore: tuple[str, ...] = ("event_from", "event.from")) -> int:
    """XenAPI calls the farm served, all hosts, less the event feed's long polls."""
    return sum(n for per_host in farm.call_counts().values()
               for method, n in per_host.items() if method not in ignore)


def count_of(farm: Farm, method: str) -> int:
    return sum(per_host.get(method, 0) for per_host in farm.call_counts().values())


@contextlib.contextmanager
def running_farm() -> Iterator[Farm]:
    f = Farm.generate(pools=1, hosts=2, speed=SPEED).start()
    try:
        yield f
    finally:
        f.stop()


@contextlib.contextmanager
def truth_session(farm: Farm) -> Iterator[XenAPI.Session]:
    """A plain XenAPI session on a farm's master: the test's view of the truth."""
    s = XenAPI.Session(farm.pools[0].master.url)
    s.login_with_password("root", "xenroot", "1.0", "dynvm-tests")
    try:
        yield s
    finally:
        s.xenapi.session.logout()


@contextlib.contextmanager
def pool_client(farm: Farm) -> Iterator[XenPoolClient]:
    c = XenPoolClient(host_config(farm))
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def farm() -> Iterator[Farm]:
    """A shared 1-pool, 2-host farm for tests that do not inject lasting faults."""
    with running_farm() as f:
        yield f


@pytest.fixture
def fresh_farm() -> Iterator[Farm]:
    """A farm of one's own, for tests that break things."""
    with running_farm() as f:
        yield f


@pytest.fixture
def xapi(farm: Farm) -> Iterator[XenAPI.Session]:
    with truth_session(farm) as s:
        yield s


@pytest.fixture
def truth(fresh_farm: Farm) -> Iterator[XenAPI.Session]:
    with truth_session(fresh_farm) as s:
        yield s


@pytest.fixture
def client(farm: Farm) -> Iterator[XenPoolClient]:
    with pool_client(farm) as c:
        yield c


@pytest.fixture
def fresh_client(fresh_farm: Farm) -> Iterator[XenPoolClient]:
    with pool_client(fresh_farm) as c:
        yield c
