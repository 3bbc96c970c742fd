"""The seed's own `.dynvmservice.ini`, unchanged: accepted, and every seed key does its job."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from dynvm.cli import main
from dynvm.config import ConfigError, GuestLogin, load_config, parse_config

SEED_INI = Path(__file__).parent / "fixtures" / "seed" / ".dynvmservice.ini"


def test_seed_ini_passes_check_config() -> None:
    # --offline: the seed's hosts are not on this network (asking them is tested on the
    # simulator, tests/service/test_cut_config.py).
    result = CliRunner().invoke(main, ["check-config", "--offline", str(SEED_INI)])
    assert result.exit_code == 0, result.output
    assert f"{SEED_INI}: OK" in result.output
    assert "xenhost1: http://172.23.96.201" in result.output
    assert "xenhost2: http://172.23.96.202 labels=perf" in result.output
    # A bare host is plain http, as in the seed: said, with the way to https.
    assert "host.name=https://172.23.96.201" in result.output
    assert "checkvms: SSH login (linux as root, windows as Administrator)" in result.output
    assert "pools=: static pools in Couchbase 172.23.104.180 bucket QE-server-pool" in result.output
    for secret in ("xenpass1", "Couch-Linux1", "Membase123", "password"):
        assert f"={secret}" not in result.output and f"'{secret}'" not in result.output


def test_seed_keys_do_their_job() -> None:
    cfg = load_config(SEED_INI, env={})
    assert cfg.linux_login == GuestLogin("root", "Couch-Linux1")
    assert cfg.windows_login == GuestLogin("Administrator", "Membase123")
    assert cfg.guest_login("windows") == cfg.windows_login
    assert cfg.guest_login("centos7") == cfg.linux_login
    static = cfg.store.static_pool
    assert static is not None
    assert (static.server, static.bucket, static.username, static.password) == (
        "172.23.104.180", "QE-server-pool", "Administrator", "password")
    h1, h2 = cfg.hosts[1], cfg.hosts[2]
    assert (h1.url, h2.url) == ("http://172.23.96.201", "http://172.23.96.202")
    assert h1.network_id == "eth0" and h1.template_networks == {}
    assert h2.template_networks == {"centos": "eth1"}
    assert set(h2.os) == {"centos", "centos7"}  # .template.network is not an OS of its own
    assert sum("no scheme" in w for w in cfg.warnings) == 2
    # Passwords never show in a repr (logs, tracebacks).
    assert "Couch-Linux1" not in repr(cfg) and "Membase123" not in repr(cfg)


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(text, source="farm.ini", env={})
    return err.value.problems


HOST = ("[xenhost1]\nhost.name=10.0.0.1\nhost.user=root\nhost.password=p\n"
        "host.storage.name=Local storage\ncentos.template=T\n")


def test_half_given_seed_keys_are_refused() -> None:
    found = _problems(HOST + "[common]\nvm.linux.username=root\n")
    assert any("missing key vm.linux.password (it goes with vm.linux.username)" in p
               for p in found)
    found = _problems(HOST + "[couchbase]\ncouchbase.server=x\ncouchbase.bucket=b\n"
                      "couchbase.username=u\ncouchbase.userpassword=p\nstatic.bucket=s\n")
    assert any("missing key static.server" in p for p in found)
    found = _problems(HOST + "ce ntos.template.network=eth1\n")
    assert found


def test_explicit_scheme_has_no_warning() -> None:
    cfg = parse_config(HOST.replace("10.0.0.1", "https://10.0.0.1"), env={})
    assert cfg.hosts[1].url == "https://10.0.0.1" and cfg.warnings == ()


def test_template_network_without_template_is_warned() -> None:
    cfg = parse_config(HOST.replace("10.0.0.1", "https://10.0.0.1")
                       + "windows.template.network=eth1\n", env={})
    assert cfg.hosts[1].template_networks == {}
    assert any("network for windows but no windows.template" in w for w in cfg.warnings)


def test_bare_host_with_tls_keys_keeps_https() -> None:
    for key in ("host.tls.verify=true\n", "host.tls.verify=false\n"):
        cfg = parse_config(HOST + key, env={})
        assert cfg.hosts[1].url == "https://10.0.0.1" and cfg.warnings == ()
