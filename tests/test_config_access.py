"""[auth] and [quota] sections of the service INI."""

from __future__ import annotations

import pytest

from dynvm.config import ConfigError, QuotaLimits, parse_config

HOST = """
[xenhost1]
host.name=127.0.0.1:9001
host.user=root
host.password=x
host.storage.name=Local storage
centos.template=tmpl
"""


def test_defaults_are_open_and_unlimited() -> None:
    cfg = parse_config(HOST)
    assert cfg.auth.legacy == "open"
    assert cfg.quota_for("anyone") == QuotaLimits()


def test_auth_and_quotas_are_read() -> None:
    cfg = parse_config(HOST + "\n[auth]\nlegacy=mutating\nfail.limit=5\n"
                       "\n[quota]\nvms=20\n\n[quota team-a]\nvms=10\nvcpus=80\nmemory_gib=64\n")
    assert cfg.auth.legacy == "mutating" and cfg.auth.fail_limit == 5
    assert cfg.quota_for("team-a") == QuotaLimits(vms=10, vcpus=80, memory_gib=64)
    assert cfg.quota_for("team-b") == QuotaLimits(vms=20)


def test_bad_values_are_refused_with_every_problem() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(HOST + "\n[auth]\nlegacy=sometimes\ncolour=red\n"
                     "\n[quota team-a]\nvms=-1\ncpus=3\n")
    text = str(err.value)
    assert "legacy: must be one of open, mutating, all" in text
    assert "colour: unknown key" in text
    assert "vms: must be at least 0" in text and "cpus: unknown key" in text
