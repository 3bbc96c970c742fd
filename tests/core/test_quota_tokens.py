"""Quota arithmetic and token life, without a farm."""

from __future__ import annotations

from dynvm.api.errors import status_of
from dynvm.config import Config, HostConfig, OsSpec, QuotaLimits
from dynvm.core import quota, tokens
from dynvm.core.store import Lease, Reservation
from dynvm.store.sqlite import SqliteStore


def cfg(**quotas: QuotaLimits) -> Config:
    host = HostConfig(ref=1, name="h", url="http://h", user="u", password="p",
                      storage_name="sr", os={"centos": OsSpec("centos", "t", 8, 4, 35)})
    return Config(hosts={1: host}, quotas=quotas)


def lease(extra: dict) -> Lease:
    return Lease(vm_uuid="v", name="n", owner="a", host_ref=1, host_uuid="h", vm_ref="r",
                 os="centos", request_id="q", created=0.0, expires=1.0, extra=extra)


def resv(vcpus: int, mem: float) -> Reservation:
    return Reservation(id="r", host_key="1/h", request_id="q", os="centos", vcpus=vcpus,
                       memory_gib=mem, disk_gib=35.0, created=0.0, expires=1e12, owner="a")


def test_usage_counts_recorded_sizes_else_the_os_size() -> None:
    c = cfg()
    used = quota.usage_of(c, [resv(2, 1.0)], [lease({}), lease({"vcpus": 16, "memory_gib": 8})])
    assert used == quota.Usage(vms=3, vcpus=2 + 8 + 16, memory_gib=1.0 + 4 + 8)


def test_room_is_the_tightest_limit() -> None:
    used = quota.Usage(vms=1, vcpus=8, memory_gib=4)
    assert quota.room(QuotaLimits(), used, 8, 4) is None
    assert quota.room(QuotaLimits(vms=10, vcpus=32, memory_gib=100), used, 8, 4) == 3
    assert quota.room(QuotaLimits(memory_gib=10), used, 8, 4) == 1
    assert quota.room(QuotaLimits(vms=1), used, 8, 4) == 0


def test_exceeded_names_the_limit_and_usage() -> None:
    c = cfg(**{"team-a": QuotaLimits(vms=5, vcpus=16)})
    over = quota.exceeded(c, "team-a", quota.Usage(vms=1, vcpus=8, memory_gib=4), 2, 8, 4)
    assert over is not None and status_of(over) == 429
    assert (over.limit, over.quota, over.used, over.asked) == ("vcpus", 16, 8, 16)
    assert "vcpus limit 16, in use 8, asked 16" in over.message
    assert quota.exceeded(c, "team-a", quota.Usage(), 2, 8, 4) is None
    assert quota.check_for(c, "nobody", 8, 4) is None  # no limit, no check in the store


def test_token_is_shown_once_stored_hashed_and_expires(tmp_path) -> None:
    store = SqliteStore(str(tmp_path / "s.sqlite"))
    try:
        secret, rec = tokens.create(store, "team-a", expires_in=60, now=1000.0)
        assert secret.startswith("dvm_") and secret not in str(store.tokens.all())
        assert rec.hash == tokens.hash_secret(secret)
        assert tokens.authenticate(store, secret, now=1030.0).owner == "team-a"
        assert tokens.authenticate(store, secret, now=1061.0) is None  # expired
        assert tokens.authenticate(store, secret + "x", now=1030.0) is None
        assert store.tokens.revoke(rec.id, 1031.0)
        assert tokens.authenticate(store, secret, now=1032.0) is None
    finally:
        store.close()


def test_durations() -> None:
    assert tokens.parse_duration("90d") == 90 * 86400
    assert tokens.parse_duration("12h") == 12 * 3600
    assert tokens.parse_duration("2w") == 14 * 86400
    for bad in ("", "0d", "soon", "-3d"):
        try:
            tokens.parse_duration(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} accepted")
