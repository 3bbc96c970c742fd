"""Sessions: reuse, HOST_IS_SLAVE, re-login, timeouts, TLS."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from dynvm.core.ports import HostUnreachable, XenError
from dynvm.sim import Farm
from dynvm.xen.session import SessionPool, master_url
from tests.xen.conftest import SPEED, count_of, host_config

LOGIN = "session.login_with_password"


def test_sessions_are_reused_across_threads(fresh_farm: Farm) -> None:
    pool = SessionPool(host_config(fresh_farm), size=4)
    fresh_farm.reset_call_counts()
    errors: list[BaseException] = []
    results: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for _ in range(n):
            try:
                hosts = pool.call("host.get_all")
                with lock:
                    results.append(len(hosts))
            except BaseException as exc:  # collected for the assert
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(7 if i < 2 else 6,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pool.close()
    assert not errors
    assert results == [2] * 50
    assert 1 <= count_of(fresh_farm, LOGIN) <= 4
    assert count_of(fresh_farm, "host.get_all") == 50
    assert count_of(fresh_farm, "session.logout") == count_of(fresh_farm, LOGIN)


def test_failure_keeps_session_and_translates(fresh_farm: Farm) -> None:
    pool = SessionPool(host_config(fresh_farm), size=2)
    fresh_farm.reset_call_counts()
    with pytest.raises(XenError) as err:
        pool.call("VM.get_by_uuid", "no-such-uuid")
    assert err.value.code == "UUID_INVALID"
    assert pool.call("pool.get_all")
    assert count_of(fresh_farm, LOGIN) == 1
    pool.close()


@pytest.fixture
def pool_of_three() -> Iterator[Farm]:
    f = Farm.generate(pools=1, hosts=3, speed=SPEED).start()
    try:
        yield f
    finally:
        f.stop()


def test_host_is_slave_is_followed_to_the_master(pool_of_three: Farm) -> None:
    farm = pool_of_three
    member = next(h for h in farm.hosts if not h.is_master)
    master = farm.pools[0].master
    pool = SessionPool(host_config(farm, url=member.url), size=2)
    farm.reset_call_counts()
    assert pool.call("pool.get_master", pool.call("pool.get_all")[0]) == master.ref
    assert pool.url == master_url(member.url, master.address)
    counts = farm.call_counts()
    assert counts[member.name_label].get(LOGIN) == 1  # refused there, once
    assert counts[master.name_label].get(LOGIN) == 1
    assert counts[master.name_label].get("pool.get_master") == 1
    pool.call("host.get_all")
    assert farm.call_counts()[member.name_label].get(LOGIN) == 1  # master remembered
    pool.close()


def test_master_url_keeps_scheme() -> None:
    assert master_url("https://10.0.0.2", "10.0.0.1") == "https://10.0.0.1"
    assert master_url("http://127.0.0.1:9001", "127.0.0.1:9003") == "http://127.0.0.1:9003"
    assert master_url("https://h", "fe80::1") == "https://[fe80::1]"


def test_relogin_after_sessions_are_invalidated(fresh_farm: Farm) -> None:
    pool = SessionPool(host_config(fresh_farm), size=2)
    pool.call("host.get_all")
    fresh_farm.reset_call_counts()
    fresh_farm.invalidate_sessions()
    assert len(pool.call("host.get_all")) == 2
    assert count_of(fresh_farm, LOGIN) == 1
    assert len(pool.call("host.get_all")) == 2
    assert count_of(fresh_farm, LOGIN) == 1
    pool.close()


def test_unreachable_host_fails_fast(fresh_farm: Farm) -> None:
    master = fresh_farm.pools[0].master
    fresh_farm.set_unreachable(master.name_label)
    pool = SessionPool(host_config(fresh_farm, connect_timeout=1.0), size=2)
    with pytest.raises(HostUnreachable):
        pool.call("host.get_all")
    fresh_farm.set_unreachable(master.name_label, False)
    assert len(pool.call("host.get_all")) == 2  # recovers by itself
    pool.close()


def test_connect_timeout_applies_when_syn_is_not_answered() -> None:
    """A listener whose accept queue is full drops SYNs: the connect hangs."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):  # fill the accept queue (never accepted)
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        probe = socket.socket()
        probe.settimeout(0.3)
        try:
            probe.connect(("127.0.0.1", port))
            hangs = False
        except (TimeoutError, OSError):
            hangs = True
        finally:
            probe.close()
        if not hangs:
            pytest.skip("this kernel answers SYNs on a full accept queue")
        from dynvm.config import HostConfig
        url = f"http://127.0.0.1:{port}"
        host = HostConfig(ref=1, name=url, url=url, user="root", password="x",
                          storage_name="Local storage", connect_timeout=0.5, call_timeout=30.0)
        pool = SessionPool(host)
        t0 = time.monotonic()
        with pytest.raises(HostUnreachable):
            pool.call("host.get_all")
        # Not before the connect timeout; far before the 30 s call timeout.
        assert 0.4 < time.monotonic() - t0 < 20.0
    finally:
        for s in fillers:
            s.close()
        lsock.close()


def test_slow_host_hits_call_timeout(fresh_farm: Farm) -> None:
    pool = SessionPool(host_config(fresh_farm, call_timeout=0.5), size=2)
    pool.call("host.get_all")  # logged in while fast
    fresh_farm.set_slow(fresh_farm.pools[0].master.name_label, 20.0)
    t0 = time.monotonic()
    with pytest.raises(HostUnreachable):
        pool.call("host.get_all")
    assert time.monotonic() - t0 < 15.0  # the 0.5 s timeout, not the 20 s answer
    fresh_farm.set_slow(fresh_farm.pools[0].master.name_label, 0)
    assert len(pool.call("host.get_all")) == 2
    pool.close()


@pytest.fixture(scope="module")
def https_farm() -> Iterator[Farm]:
    f = Farm.generate(pools=1, hosts=1, speed=SPEED, https=True).start()
    try:
        yield f
    finally:
        f.stop()


def test_https_verified_with_the_farm_ca(https_farm: Farm) -> None:
    assert https_farm.pools[0].master.url.startswith("https://")
    assert https_farm.ca_file
    pool = SessionPool(host_config(https_farm))
    assert len(pool.call("host.get_all")) == 1
    pool.close()


def test_https_refused_without_the_ca(https_farm: Farm) -> None:
    pool = SessionPool(host_config(https_farm, ca_file=None))
    with pytest.raises(HostUnreachable) as err:
        pool.call("host.get_all")
    assert "CERTIFICATE" in str(err.value).upper()
    pool.close()


def test_https_unverified_when_switched_off(https_farm: Farm,
                                            caplog: pytest.LogCaptureFixture) -> None:
    pool = SessionPool(host_config(https_farm, ca_file=None, verify_tls=False,
                                   name="unverified-host"))
    with caplog.at_level("WARNING"):
        assert len(pool.call("host.get_all")) == 1
        pool.close()
        pool2 = SessionPool(host_config(https_farm, ca_file=None, verify_tls=False,
                                        name="unverified-host"))
        pool2.call("host.get_all")
        pool2.close()
    warnings = [r for r in caplog.records if "verification is off" in r.getMessage()]
    assert len(warnings) == 1


def test_session_in_use_at_close_is_logged_out(fresh_farm: Farm) -> None:
    pool = SessionPool(host_config(fresh_farm), size=2)
    fresh_farm.reset_call_counts()
    with pool.session() as s:
        pool.call("host.get_all")  # a second, idle session
        pool.close()
        assert len(s.xenapi.host.get_all()) == 2
    assert count_of(fresh_farm, LOGIN) == 2
    assert count_of(fresh_farm, "session.logout") == 2
    with pytest.raises(HostUnreachable):
        pool.call("host.get_all")
