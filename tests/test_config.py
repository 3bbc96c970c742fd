"""Configuration: the seed's INI format, validation messages and hot reload."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from dynvm.config import (
    Config,
    ConfigError,
    ConfigWatcher,
    load_config,
    normalise_host_url,
    parse_config,
)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config" / "dynvmservice.ini.example"

# The example of DESIGN.md's "Configuration" section, verbatim.
DESIGN_EXAMPLE = """\
[couchbase]
couchbase.server=127.0.0.1
couchbase.bucket=dynvms
couchbase.username=dynvm
couchbase.userpassword=${DYNVM_CB_PASSWORD}

[common]
vm.expiry.minutes=720          ; the longest lease anyone may ask for
vm.network.timeout.secs=400    ; how long to wait for a usable IP

[xenhost1]
host.name=10.1.2.3             ; or host:port; https:// may be given
host.user=root
host.password=${XEN1_PASSWORD}
host.storage.name=Local storage
host.labels=perf,windows       ; optional
host.network.id=eth1           ; optional: PIF device whose network VMs join
host.vms.max.centos=20         ; optional cap per OS
centos.template=tmpl-cnt7.7
centos.vcpus=8                 ; optional; defaults below
centos.memory=4                ; GiB
centos.disk=35                 ; GiB
windows.template=tmpl-win16dc - PATCHED (1)
"""
DESIGN_ENV = {"DYNVM_CB_PASSWORD": "cb-secret-value", "XEN1_PASSWORD": "xen-secret-value"}

MINIMAL_HOST = """\
[xenhost{n}]
host.name={name}
host.user=root
host.password=pw
host.storage.name=Local storage
centos.template=tmpl-cnt7.7
"""


def host(n: int = 1, name: str | None = None, extra: str = "") -> str:
    return MINIMAL_HOST.format(n=n, name=name or f"10.0.0.{n}") + extra


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, source="farm.ini", env=env or {})
    err = exc.value
    assert str(err).count("\n  - ") == len(err.problems)  # the message lists every one
    return err.problems


def only_problem(text: str, env: dict[str, str] | None = None) -> str:
    found = problems(text, env)
    assert len(found) == 1, found
    return found[0]


# ------------------------------------------------------------------ parsing


def test_design_example_parses() -> None:
    cfg = parse_config(DESIGN_EXAMPLE, env=DESIGN_ENV)
    assert list(cfg.hosts) == [1]
    h = cfg.hosts[1]
    assert (h.ref, h.name, h.url) == (1, "10.1.2.3", "http://10.1.2.3")  # the seed's meaning
    assert (h.user, h.password, h.storage_name) == ("root", "xen-secret-value", "Local storage")
    assert h.labels == frozenset({"perf", "windows"})
    assert h.network_id == "eth1"
    assert h.vms_max == {"centos": 20}
    assert set(h.os) == {"centos", "windows"}
    c = h.os["centos"]
    assert (c.template, c.vcpus, c.memory_gib, c.disk_gib) == ("tmpl-cnt7.7", 8, 4, 35)
    w = h.os["windows"]
    assert w.template == "tmpl-win16dc - PATCHED (1)"  # spaces and parentheses kept
    assert (w.vcpus, w.memory_gib, w.disk_gib) == (12, 6, 71)
    assert w.is_windows and not c.is_windows
    assert cfg.expiry_minutes_max == 720
    assert cfg.network_timeout_secs == 400
    cb = cfg.store.couchbase
    assert cb is not None
    assert (cb.server, cb.bucket, cb.username, cb.password) == (
        "127.0.0.1", "dynvms", "dynvm", "cb-secret-value")
    assert (cb.scope, cb.collection) == ("_default", "_default")
    assert cfg.store.backend == "sqlite"
    assert cfg.served_os == frozenset({"centos", "windows"})


def test_defaults() -> None:
    cfg = parse_config(host())
    assert (cfg.expiry_minutes_max, cfg.network_timeout_secs, cfg.per_host_parallel) == (720, 400, 4)
    assert (cfg.ssh_port, cfg.default_expiry_minutes, cfg.snapshots_max) == (22, 1440, 3)
    assert cfg.store.backend == "sqlite"
    assert cfg.store.sqlite_path == ".dynvm/dynvm.sqlite"
    assert cfg.store.couchbase is None
    assert cfg.pools == {}
    h = cfg.hosts[1]
    assert (h.verify_tls, h.ca_file, h.network_id) == (True, None, None)
    assert (h.connect_timeout, h.call_timeout) == (5.0, 60.0)
    assert h.labels == frozenset() and h.vms_max == {}
    spec = h.os["centos"]
    assert (spec.vcpus, spec.memory_gib, spec.disk_gib) == (8, 4, 35)


def test_common_values_override_defaults() -> None:
    text = """\
[common]
vm.expiry.minutes=60
vm.default.expiry.minutes=30
vm.network.timeout.secs=90
vm.parallel.per.host=2
vm.ssh.port=2222
vm.snapshots.max=0
""" + host()
    cfg = parse_config(text)
    assert cfg.snapshots_max == 0  # snapshots turned off
    assert (cfg.expiry_minutes_max, cfg.default_expiry_minutes) == (60, 30)
    assert (cfg.network_timeout_secs, cfg.per_host_parallel, cfg.ssh_port) == (90, 2, 2222)


def test_os_spec_is_the_first_serving_hosts() -> None:
    cfg = parse_config(host(2, extra="centos.vcpus=2\n") + host(1, extra="centos.vcpus=3\n"))
    spec = cfg.os_spec("centos")
    assert spec is not None and spec.vcpus == 3  # xenhost1, though written second
    assert cfg.os_spec("plan9") is None


def test_lease_minutes_default_and_cap() -> None:
    cfg = parse_config("[common]\nvm.expiry.minutes=60\nvm.default.expiry.minutes=30\n" + host())
    assert (cfg.lease_minutes(None), cfg.lease_minutes(45), cfg.lease_minutes(90)) == (30, 45, 60)


def test_reservation_ttl_follows_the_network_wait() -> None:
    """Reservations, name claims and cancel marks of a dead builder lapse after three
    network waits and the slack: a longer network wait keeps them longer."""
    assert parse_config(host()).reservation_ttl_secs == 400 * 3 + 900
    cfg = parse_config("[common]\nvm.network.timeout.secs=90\n" + host())
    assert cfg.reservation_ttl_secs == 90 * 3 + 900


@pytest.mark.parametrize(
    ("os_key", "expected"),
    [("windows", (12, 6, 71)), ("win2019", (12, 6, 71)), ("ubuntu", (8, 4, 35)),
     ("centos", (8, 4, 35))],
)
def test_size_defaults_by_os(os_key: str, expected: tuple[int, int, int]) -> None:
    text = host().replace("centos.template=tmpl-cnt7.7\n", f"{os_key}.template=tmpl {os_key}\n")
    cfg = parse_config(text)
    spec = cfg.hosts[1].os[os_key]
    assert (spec.vcpus, spec.memory_gib, spec.disk_gib) == expected


def test_partial_sizes_keep_other_defaults() -> None:
    cfg = parse_config(host(extra="windows.template=w\nwindows.memory=8\n"))
    spec = cfg.hosts[1].os["windows"]
    assert (spec.vcpus, spec.memory_gib, spec.disk_gib) == (12, 8, 71)


def test_host_without_template_cannot_serve_os() -> None:
    text = host(1, extra="windows.template=w\n") + host(2)
    cfg = parse_config(text)
    assert "windows" in cfg.hosts[1].os
    assert "windows" not in cfg.hosts[2].os


def test_sizes_without_template_warn_and_do_not_serve() -> None:
    cfg = parse_config(host(extra="windows.vcpus=4\n"))
    assert "windows" not in cfg.hosts[1].os
    warnings = [w for w in cfg.warnings if "host.name: no scheme" not in w]
    assert len(warnings) == 1
    assert "windows.vcpus" in warnings[0] and "no windows.template" in warnings[0]


def test_host_options() -> None:
    extra = """\
host.tls.verify=false
host.timeout.connect.secs=2.5
host.timeout.call.secs=30
host.labels= a , b,,c
"""
    h = parse_config(host(extra=extra)).hosts[1]
    assert h.verify_tls is False
    assert (h.connect_timeout, h.call_timeout) == (2.5, 30.0)
    assert h.labels == frozenset({"a", "b", "c"})


def test_tls_ca_relative_to_config_file(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    path = tmp_path / "farm.ini"
    path.write_text(host(extra="host.tls.ca=ca.pem\n"))
    assert load_config(path).hosts[1].ca_file == str(tmp_path / "ca.pem")
    path.write_text(host(extra="host.tls.ca=missing.pem\n"))
    with pytest.raises(ConfigError, match=r"farm.ini:7: \[xenhost1\] host.tls.ca: the CA bundle is "
                                          r"not a readable file") as info:
        load_config(path)
    assert "missing.pem" not in str(info.value)  # a value is never echoed


def test_inline_comments_and_key_case() -> None:
    text = host(extra="host.network.id=eth1 # the lab network\nCentOS.template=T ; upper\n")
    h = parse_config(text).hosts[1]
    assert h.network_id == "eth1"
    assert h.os["CentOS"].template == "T"  # keys are case-sensitive: a separate OS key
    assert h.os["centos"].template == "tmpl-cnt7.7"


def test_value_with_semicolon_without_space_is_kept() -> None:
    cfg = parse_config(host(extra="ubuntu.template=tmpl;v2#x\n"))
    assert cfg.hosts[1].os["ubuntu"].template == "tmpl;v2#x"


def test_store_and_pools() -> None:
    text = host(1, extra="host.labels=perf\n") + """\
[store]
backend=couchbase
sqlite.path=/var/lib/dynvm/state.sqlite
outbox.path=/var/lib/dynvm/outbox.sqlite

[couchbase]
couchbase.server=couchbase://cb.example
couchbase.bucket=dynvms
couchbase.username=dynvm
couchbase.userpassword=${CB}
couchbase.scope=ci
couchbase.collection=vms

[pool centos]
ready=3
labels=perf
"""
    cfg = parse_config(text, env={"CB": "pw"})
    assert cfg.store.backend == "couchbase"
    assert cfg.store.sqlite_path == "/var/lib/dynvm/state.sqlite"
    assert cfg.store.outbox_path == "/var/lib/dynvm/outbox.sqlite"
    assert cfg.store.couchbase is not None
    assert (cfg.store.couchbase.scope, cfg.store.couchbase.collection) == ("ci", "vms")
    pool = cfg.pools["centos"]
    assert (pool.os, pool.ready, pool.labels, pool.ttl_minutes) == ("centos", 3, frozenset({"perf"}), 240)


# ----------------------------------------------------------- url normalisation


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("10.1.2.3", "http://10.1.2.3"),  # a bare host: http, as the seed spoke it
        ("xen1.example.net", "http://xen1.example.net"),
        ("xen1:8443", "http://xen1:8443"),
        ("https://10.1.2.3", "https://10.1.2.3"),
        ("https://10.1.2.3/", "https://10.1.2.3"),
        ("http://127.0.0.1:9001", "http://127.0.0.1:9001"),
        ("HTTP://127.0.0.1:9001", "http://127.0.0.1:9001"),
        ("::1", "http://[::1]"),
        ("[::1]:9001", "http://[::1]:9001"),
        ("https://[::1]:9001", "https://[::1]:9001"),
    ],
)
def test_url_normalisation(name: str, url: str) -> None:
    assert normalise_host_url(name) == url
    assert parse_config(host(name=name)).hosts[1].url == url


@pytest.mark.parametrize("name", ["ftp://x", "https://", "xen1:notaport", "xen1:99999", "a b"])
def test_bad_host_name(name: str) -> None:
    msg = only_problem(host(name=name))
    assert "farm.ini:2: [xenhost1] host.name:" in msg and repr(name) not in msg


# ------------------------------------------------------------------ ${ENV}


def test_env_expansion_anywhere_in_value() -> None:
    text = host(name="${XEN_HOST}:${XEN_PORT}", extra="host.storage.name=${SR} storage\n")
    text = text.replace("host.storage.name=Local storage\n", "")
    h = parse_config(text, env={"XEN_HOST": "xen9", "XEN_PORT": "8443", "SR": "Local"}).hosts[1]
    assert h.url == "http://xen9:8443"
    assert h.storage_name == "Local storage"


def test_env_defaults_to_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNVM_TEST_XEN_PW", "from-os-environ")
    text = host().replace("host.password=pw", "host.password=${DYNVM_TEST_XEN_PW}")
    assert parse_config(text).hosts[1].password == "from-os-environ"


def test_missing_env_names_variable_section_and_key() -> None:
    msg = only_problem(DESIGN_EXAMPLE, env={"XEN1_PASSWORD": "x"})
    assert msg == ("farm.ini:5: [couchbase] couchbase.userpassword: "
                   "environment variable DYNVM_CB_PASSWORD is not set")


def test_malformed_env_reference() -> None:
    msg = only_problem(host().replace("host.password=pw", "host.password=${BROKEN"))
    assert "[xenhost1] host.password: malformed ${...} reference" in msg


def test_secrets_never_shown() -> None:
    cfg = parse_config(DESIGN_EXAMPLE, env=DESIGN_ENV)
    text = repr(cfg)
    assert "xen-secret-value" not in text and "cb-secret-value" not in text
    # Values that came from the environment are not echoed in messages either.
    bad = DESIGN_EXAMPLE.replace("vm.network.timeout.secs=400", "vm.network.timeout.secs=${T}")
    msg = only_problem(bad, env={**DESIGN_ENV, "T": "secret-ish"})
    assert "vm.network.timeout.secs: must be a whole number" in msg
    assert "secret-ish" not in msg


# ------------------------------------------------------------- validation


def test_every_problem_is_listed_with_location() -> None:
    text = """\
[common]
vm.expiry.minutes=abc
vm.network.timeout.sec=5

[xenhost1]
host.name=10.1.2.3
host.nmae=x
centos.templat=foo
"""
    found = problems(text)
    assert found == [
        "farm.ini:2: [common] vm.expiry.minutes: must be a whole number",
        "farm.ini:3: [common] vm.network.timeout.sec: unknown key (did you mean vm.network.timeout.secs?)",
        "farm.ini:5: [xenhost1] missing required key host.user",
        "farm.ini:5: [xenhost1] missing required key host.password",
        "farm.ini:5: [xenhost1] missing required key host.storage.name",
        "farm.ini:7: [xenhost1] host.nmae: unknown key (did you mean host.name?)",
        "farm.ini:8: [xenhost1] centos.templat: unknown key (did you mean centos.template?)",
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("vm.expiry.minutes=0", "[common] vm.expiry.minutes: must be a positive number"),
        ("vm.expiry.minutes=-5", "[common] vm.expiry.minutes: must be a positive number"),
        ("vm.parallel.per.host=2.5", "[common] vm.parallel.per.host: must be a whole number"),
        ("vm.ssh.port=70000", "[common] vm.ssh.port: must be between 1 and 65535"),
        ("vm.snapshots.max=31", "[common] vm.snapshots.max: must be between 0 and 30"),
        ("vm.snapshots.max=-1", "[common] vm.snapshots.max: must be between 0 and 30"),
        ("vm.password.login=no way", "[common] vm.password.login: must be true or false"),
        ("vm.expiry.minute=5", "[common] vm.expiry.minute: unknown key (did you mean vm.expiry.minutes?)"),
        ("frobnicate=1", "[common] frobnicate: unknown key"),
    ],
)
def test_common_errors(line: str, expected: str) -> None:
    msg = only_problem(f"[common]\n{line}\n" + host())
    assert msg == f"farm.ini:2: {expected}"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("centos.vcpus=0\n", "centos.vcpus: must be a positive number"),
        ("centos.memory=four\n", "centos.memory: must be a whole number"),
        ("centos.disk=-1\n", "centos.disk: must be a positive number"),
        ("host.vms.max.centos=x\n", "host.vms.max.centos: must be a whole number"),
        ("host.vms.max.centos=-1\n", "host.vms.max.centos: must be at least 0"),
        ("host.tls.verify=maybe\n", "host.tls.verify: must be true or false"),
        ("centos.cloudinit=yes please\n", "centos.cloudinit: must be true or false"),
        ("host.timeout.call.secs=0\n", "host.timeout.call.secs: must be a positive number"),
        ("host.timeout.connect.secs=soon\n", "host.timeout.connect.secs: must be a number of seconds"),
        ("host.lables=a\n", "host.lables: unknown key (did you mean host.labels?)"),
        ("centos.cpus=4\n", "centos.cpus: unknown key (did you mean centos.vcpus?)"),
    ],
)
def test_host_key_errors(extra: str, expected: str) -> None:
    msg = only_problem(host(extra=extra))
    assert expected in msg and "xenhost1" in msg


def test_cloud_init_templates_and_password_logins() -> None:
    cfg = parse_config("[common]\nvm.password.login=false\n" + host(extra="centos.cloudinit=true\n"),
                       source="farm.ini", env={})
    assert cfg.password_login is False and cfg.hosts[1].os["centos"].cloudinit is True
    plain = parse_config(host(), source="farm.ini", env={})
    assert plain.password_login is True and plain.hosts[1].os["centos"].cloudinit is False


def test_empty_template_is_an_error() -> None:
    text = host().replace("centos.template=tmpl-cnt7.7", "centos.template=")
    assert only_problem(text) == "farm.ini:6: [xenhost1] centos.template: must not be empty"


EVERY_KEY_EMPTY = [  # (section, key): every key, defaulted or not, refuses an empty value
    ("common", "vm.expiry.minutes"), ("common", "inventory.cache"),
    ("common", "background.leader.ttl.secs"), ("common", "vm.linux.username"),
    ("xenhost1", "host.labels"), ("xenhost1", "host.network.id"), ("xenhost1", "host.tls.ca"),
    ("xenhost1", "host.vms.max.centos"), ("xenhost1", "centos.vcpus"),
    ("xenhost1", "centos.template.network"), ("xenhost1", "host.drain"),
    ("store", "sqlite.path"), ("store", "backend"), ("pool centos", "labels"),
    ("auth", "legacy"), ("quota", "vms"), ("quota", "priority.max"),
    ("queue", "max_wait_minutes"),
]


@pytest.mark.parametrize(("section", "key"), EVERY_KEY_EMPTY)
def test_an_empty_value_is_an_error_for_every_key(section: str, key: str) -> None:
    text = host() + "[pool centos]\nready=1\n"
    if section == "xenhost1":
        text = text.replace("[pool centos]", f"{key}=\n[pool centos]")
    else:
        text += f"[{section}]\n" if section != "pool centos" else ""
        text += f"{key}=  ; a comment is no value\n"
    line = text.splitlines().index(f"{key}=" if section == "xenhost1"
                                   else f"{key}=  ; a comment is no value") + 1
    assert f"farm.ini:{line}: [{section}] {key}: must not be empty" in problems(text)


def test_an_empty_environment_variable_is_an_empty_value() -> None:
    text = host().replace("host.password=pw", "host.password=${XEN_PW}")
    assert only_problem(text, env={"XEN_PW": ""}) == (
        "farm.ini:4: [xenhost1] host.password: must not be empty (its ${...} is empty)")


def test_a_file_whose_last_line_has_no_newline_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "farm.ini"
    path.write_text(host(extra="host.vms.max.centos=1"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [
        f"{path}:7: [xenhost1] host.vms.max.centos: the last line has no newline: the file "
        "looks cut short or still being written (a whole file ends with a newline)"]
    path.write_text(host(extra="host.vms.max.centos=12\n"))
    assert load_config(path).hosts[1].vms_max == {"centos": 12}
    path.write_text(host(extra="; the end") )
    assert "farm.ini:7: the last line has no newline" in str(pytest.raises(
        ConfigError, load_config, path).value)


def test_duplicate_key_and_section() -> None:
    assert only_problem(host(extra="centos.template=again\n")) == (
        "farm.ini:7: [xenhost1] centos.template: key appears twice in the section")
    assert only_problem(host() + host()) == "farm.ini:7: [xenhost1] section appears twice"


def test_line_that_is_not_key_value() -> None:
    assert only_problem(host(extra="just words\n")) == (
        "farm.ini:7: not a key=value line (the line's text is not shown)")


def test_text_before_first_section() -> None:
    assert "text before the first [section]" in only_problem("host.name=x\n" + host())


@pytest.mark.parametrize("key", ["host.name", "host.user", "host.password", "host.storage.name"])
def test_missing_required_host_key(key: str) -> None:
    text = "\n".join(line for line in host().splitlines() if not line.startswith(key + "="))
    assert only_problem(text) == f"farm.ini:1: [xenhost1] missing required key {key}"


def test_empty_required_key() -> None:
    text = host().replace("host.user=root", "host.user=")
    assert only_problem(text) == "farm.ini:3: [xenhost1] host.user: must not be empty"


def test_no_host_section() -> None:
    msg = only_problem("[common]\nvm.expiry.minutes=10\n")
    assert msg == "farm.ini: no [xenhostN] section: at least one host is needed"


def test_duplicate_host_name() -> None:
    text = host(1, name="10.1.2.3") + host(2, name="http://10.1.2.3/")
    msg = only_problem(text)
    assert msg == "farm.ini:8: [xenhost2] host.name: same host as [xenhost1]"


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("xenhost0", "bad section name: host number '0' (numbers start at 1)"),
        ("xenhost01", "bad section name: host number '01' (write [xenhost1])"),
        ("xenhost", "bad section name (hosts are [xenhostN]"),
        ("XenHost2", "bad section name (hosts are [xenhostN]"),
        ("commons", "bad section name (did you mean common?)"),
        ("DEFAULT", "bad section name"),
        ("pool", "bad section name (warm pools are [pool <os>]"),
    ],
)
def test_bad_section_names(section: str, expected: str) -> None:
    msg = only_problem(host(5) + f"\n[{section}]\n")
    assert f"[{section}] {expected}" in msg


def test_pool_for_unserved_os() -> None:
    msg = only_problem(host() + "\n[pool windows]\nready=1\n")
    assert "[pool windows] no host serves windows" in msg and "served: centos" in msg


def test_pool_errors() -> None:
    assert "[pool centos] missing required key ready" in only_problem(host() + "[pool centos]\n")
    assert "[pool centos] ready: must be at least 0" in only_problem(
        host() + "[pool centos]\nready=-1\n")
    assert "ready.ttl.minutes: must be a positive number" in only_problem(
        host() + "[pool centos]\nready=1\nready.ttl.minutes=0\n")
    assert "no host serving centos has any of these labels" in only_problem(
        host() + "[pool centos]\nready=1\nlabels=gpu\n")
    assert "readdy: unknown key (did you mean ready?)" in only_problem(
        host() + "[pool centos]\nready=1\nreaddy=2\n")


def test_store_errors() -> None:
    assert "[store] backend: must be sqlite or couchbase" in only_problem(
        host() + "[store]\nbackend=mysql\n")
    assert "[store] backend: backend=couchbase needs a [couchbase] section" in only_problem(
        host() + "[store]\nbackend=couchbase\n")
    assert "[store] sqlite_path: unknown key (did you mean sqlite.path?)" in only_problem(
        host() + "[store]\nsqlite_path=x\n")


def test_couchbase_errors() -> None:
    text = host() + "[couchbase]\ncouchbase.server=x\ncouchbase.bukket=b\n"
    found = problems(text)
    assert any("couchbase.bukket: unknown key (did you mean couchbase.bucket?)" in m for m in found)
    for key in ("couchbase.bucket", "couchbase.username", "couchbase.userpassword"):
        assert any(m.endswith(f"[couchbase] missing required key {key}") for m in found), key


def test_seed_couchbase_section_without_store_backend_is_warned() -> None:
    cb = ("[couchbase]\ncouchbase.server=x\ncouchbase.bucket=b\ncouchbase.username=u\n"
          "couchbase.userpassword=p\n")
    cfg = parse_config(host() + cb, env={})
    assert cfg.store.backend == "sqlite" and cfg.store.couchbase is not None
    assert any("[couchbase]" in w and "backend=couchbase" in w for w in cfg.warnings)
    used = parse_config(host() + cb + "[store]\nbackend=couchbase\n", env={})
    assert used.store.backend == "couchbase"
    assert not any("[couchbase]" in w for w in used.warnings)


def test_load_config_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.ini")


def test_example_file_loads(tmp_path: Path) -> None:
    env = {"XEN1_PASSWORD": "a", "XEN2_PASSWORD": "b", "DYNVM_CB_PASSWORD": "c"}
    cfg = load_config(EXAMPLE, env=env)
    assert cfg.warnings == ()
    assert set(cfg.hosts) == {1, 2}
    assert cfg.hosts[1].labels and cfg.hosts[1].vms_max
    assert "windows" in cfg.hosts[2].os and "windows" not in cfg.hosts[1].os
    assert cfg.pools["centos"].ready >= 1
    # Every secret comes from the environment.
    assert "password=${" in EXAMPLE.read_text()
    with pytest.raises(ConfigError, match="XEN1_PASSWORD is not set"):
        load_config(EXAMPLE, env={})
    # The commented-out keys are real keys too: uncommented, the file still loads.
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    text = EXAMPLE.read_text()
    text = text.replace(";host.tls.ca=/etc/dynvm/xen-ca.pem", f"host.tls.ca={ca}")
    text = text.replace("\n;couchbase.", "\ncouchbase.").replace(";[couchbase]", "[couchbase]")
    text = text.replace("backend=sqlite ", "backend=couchbase ")
    full = parse_config(text, env=env)
    assert full.hosts[1].ca_file == str(ca)
    assert full.store.backend == "couchbase" and full.store.couchbase is not None


# ------------------------------------------------------------------ watcher


def write(path: Path, text: str) -> None:
    """Write in place (as an editor might), mtime and size possibly unchanged."""
    path.write_text(text)


def watcher_file(tmp_path: Path, text: str | None = None) -> Path:
    path = tmp_path / "dynvmservice.ini"
    write(path, text if text is not None else host())
    return path


def test_watcher_first_load_must_succeed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no \\[xenhostN\\]"):
        ConfigWatcher(watcher_file(tmp_path, "[common]\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        ConfigWatcher(tmp_path / "absent.ini")


def test_watcher_reloads_on_same_size_change(tmp_path: Path) -> None:
    path = watcher_file(tmp_path)
    changes: list[Config] = []
    w = ConfigWatcher(path, env={}, on_change=changes.append, check_interval=0.0)
    assert w.generation == 1 and w.last_error is None
    first = w.current()
    stat = path.stat()
    write(path, host().replace("tmpl-cnt7.7", "tmpl-cnt7.8"))  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime too
    second = w.current()
    assert second is not first
    assert second.hosts[1].os["centos"].template == "tmpl-cnt7.8"
    assert w.generation == 2 and changes == [second]
    assert w.current() is second  # nothing changed: no reload, no callback
    assert w.reload() is False
    assert changes == [second]


def test_watcher_check_interval_keeps_hot_path_cheap(tmp_path: Path) -> None:
    path = watcher_file(tmp_path)
    w = ConfigWatcher(path, env={}, check_interval=3600.0)
    first = w.current()
    write(path, host(name="10.9.9.9"))
    assert w.current() is first  # not looked at before the interval
    assert w.reload() is True  # a forced check sees it
    assert w.current().hosts[1].url == "http://10.9.9.9"


def test_watcher_refuses_broken_file_and_keeps_last_good(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = watcher_file(tmp_path)
    changes: list[Config] = []
    w = ConfigWatcher(path, env={}, on_change=changes.append, check_interval=0.0)
    good = w.current()
    caplog.set_level(logging.ERROR, logger="dynvm.config")

    write(path, host(extra="host.nmae=typo\n"))
    assert w.reload() is False
    assert w.current() is good
    assert w.generation == 1 and changes == []
    assert w.last_error is not None
    assert "host.nmae: unknown key (did you mean host.name?)" in w.last_error
    errors = [r for r in caplog.records if r.name == "dynvm.config" and r.levelno == logging.ERROR]
    assert len(errors) == 1 and "host.nmae" in errors[0].getMessage()
    w.current()
    w.reload()  # the same broken content is not logged again
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1

    write(path, host())  # put back as it was: the error clears, but nothing changed
    assert w.reload() is False
    assert w.last_error is None and w.generation == 1 and changes == []

    write(path, "[common]\n")
    assert w.reload() is False
    assert "no [xenhostN] section" in (w.last_error or "")

    path.unlink()  # a vanished file is refused too
    assert w.reload() is False and w.current() is good
    assert "cannot read" in (w.last_error or "")

    write(path, host(name="10.7.7.7"))
    assert w.reload() is True
    assert w.last_error is None
    assert w.generation == 2
    assert w.current().hosts[1].url == "http://10.7.7.7"
    assert changes == [w.current()]


def test_watcher_on_change_error_does_not_break_reload(tmp_path: Path) -> None:
    path = watcher_file(tmp_path)

    def boom(_: Config) -> None:
        raise RuntimeError("handler bug")

    w = ConfigWatcher(path, env={}, on_change=boom, check_interval=0.0)
    write(path, host(name="10.5.5.5"))
    assert w.reload() is True
    assert w.current().hosts[1].url == "http://10.5.5.5"


def test_watcher_thread_safety(tmp_path: Path) -> None:
    """Readers never see anything but a whole good Config while the file churns."""
    path = watcher_file(tmp_path)
    changes: list[int] = []
    w = ConfigWatcher(path, env={}, on_change=lambda c: changes.append(c.per_host_parallel),
                      check_interval=0.002)
    stop = threading.Event()
    seen: list[int] = []
    failures: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                cfg = w.current()
                assert isinstance(cfg, Config) and 1 in cfg.hosts
                seen.append(cfg.per_host_parallel)
                # Paced like request threads; a pure spin only measures GIL convoys.
                stop.wait(0.0005)
        except BaseException as e:  # reported by the main thread
            failures.append(e)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for n in range(1, 41):
            tmp = path.with_suffix(".tmp")
            body = f"[common]\nvm.parallel.per.host={n}\n" + host()
            if n % 5 == 0:
                body = "[common]\nvm.parallel.per.host=broken\n" + host()
            tmp.write_text(body)
            os.replace(tmp, path)  # atomic, so each read sees a whole file
            deadline = time.monotonic() + 5
            want = w.generation if n % 5 == 0 else None
            while n % 5 != 0 and w.current().per_host_parallel != n:
                assert time.monotonic() < deadline, f"change {n} not picked up"
            if want is not None:
                while w.last_error is None:
                    w.current()
                    assert time.monotonic() < deadline, "broken file not noticed"
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures, failures[0]
    assert w.current().per_host_parallel == 39
    assert w.generation == 1 + 32  # each good change once
    assert changes == [n for n in range(1, 40) if n % 5 != 0]  # once each, in order
    assert set(seen) <= set(range(1, 40)) | {4}
    assert len(set(seen)) > 1  # the readers saw the changes, not just one Config


def test_check_command(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from dynvm.cli import main

    good = watcher_file(tmp_path)
    result = CliRunner().invoke(main, ["check-config", str(good)])
    assert result.exit_code == 0 and f"{good}: OK" in result.output
    good.write_text(host(extra="host.nmae=x\n"))
    result = CliRunner().invoke(main, ["check-config", str(good)])
    assert result.exit_code == 2  # a configuration problem
    assert "did you mean host.name?" in result.output


def test_queue_and_priority() -> None:
    cfg = parse_config(host() + "[queue]\nmax_wait_minutes=20\nmax_wait_minutes.max=90\n"
                       "[quota team-p]\npriority.max=7\n[quota]\nvms=3\n", env={})
    assert (cfg.queue.max_wait_minutes, cfg.queue.max_wait_minutes_cap) == (20, 90)
    assert cfg.queue.wait_minutes(None) == 20 and cfg.queue.wait_minutes(500) == 90
    assert cfg.quota_for("team-p").priority_max == 7
    assert cfg.quota_for("anyone").priority_max == 0 and cfg.quota_for("anyone").vms == 3
    default = parse_config(host(), env={})
    assert (default.queue.max_wait_minutes, default.queue.max_wait_minutes_cap) == (60, 1440)
    assert only_problem(host() + "[queue]\nmax_wait_minutes=100\nmax_wait_minutes.max=90\n") \
        == "farm.ini:8: [queue] max_wait_minutes: must not exceed max_wait_minutes.max (90)"
    assert only_problem(host() + "[quota]\npriority.max=101\n") \
        == "farm.ini:8: [quota] priority.max: must be between 0 and 100"
    assert "farm.ini:8: [queue] wait: unknown key" in only_problem(host() + "[queue]\nwait=3\n")
    assert default.queue.legacy_wait(None) == 0  # legacy callers are refused at once
    legacy = parse_config(host() + "[queue]\nlegacy.wait.secs=300\nmax_wait_minutes.max=60\n",
                          env={}).queue
    assert (legacy.legacy_wait(None), legacy.legacy_wait(0), legacy.legacy_wait(9999)) \
        == (300, 0, 3600)
    assert only_problem(host() + "[queue]\nlegacy.wait.secs=3601\nmax_wait_minutes.max=60\n") \
        == "farm.ini:8: [queue] legacy.wait.secs: must be between 0 and 3600"


def test_a_pool_sized_from_demand() -> None:
    cfg = parse_config(host() + "[pool centos]\nready=auto\nmin=1\nmax=6\n", env={})
    pool = cfg.pools["centos"]
    assert (pool.auto, pool.min_ready, pool.max_ready, pool.ready) == (True, 1, 6, 1)
    static = parse_config(host() + "[pool centos]\nready=2\n", env={}).pools["centos"]
    assert (static.auto, static.ready) == (False, 2)
    assert only_problem(host() + "[pool centos]\nready=2\nmin=1\n") \
        == "farm.ini:9: [pool centos] min: only with ready=auto"
    assert only_problem(host() + "[pool centos]\nready=auto\nmin=4\nmax=2\n") \
        == "farm.ini:10: [pool centos] max: must be at least min (4)"
    assert "must be a whole number" in only_problem(host() + "[pool centos]\nready=lots\n")
