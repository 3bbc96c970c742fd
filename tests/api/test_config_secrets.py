"""Secrets from the INI file never reach /health, the log or an error body,
even when the line holding one is malformed."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, cast

import pytest
from click.testing import CliRunner

from dynvm.api import create_app
from dynvm.cli import main
from dynvm.config import ConfigError, parse_config
from dynvm.runtime.bootstrap import build_service
from dynvm.sim import Farm
from testbed.inis import Ini

SECRET = "hunter2-Zq9"

MALFORMED = [
    f"host.password {SECRET}",          # no '='
    f"host.password\t{SECRET}",
    f"couchbase.userpassword {SECRET}",
    f"  host.password {SECRET}",
    f"db_token {SECRET}",
]


@pytest.mark.parametrize("line", MALFORMED)
def test_malformed_secret_line_is_reported_without_the_secret(line: str) -> None:
    text = f"[xenhost1]\nhost.name=10.0.0.1\nhost.user=root\n{line}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    report = str(info.value) + "\n".join(info.value.problems)
    assert SECRET not in report, report
    assert any(f":{n}:" in report for n in (3, 4)), report  # still says where


def test_secret_before_the_first_section_is_hidden() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(f"host.password={SECRET}\n[xenhost1]\n", env={})
    assert SECRET not in str(info.value)
    assert "host.password" in str(info.value)


HOST_LINES = ("host.name=10.0.0.1\nhost.user=root\nhost.password=x\n"
              "host.storage.name=Local storage\ncentos.template=t\n")

# (file text, line of the problem, what the report must name there): no key of these
# hints at a secret, and no value may be echoed all the same.
NO_ECHO = [
    (f"[xenhost1]\n{HOST_LINES}xen.pw {SECRET}\n", 7, "not a key=value line"),
    (f"[xenhost1]\n{HOST_LINES}{SECRET}\n", 7, "not a key=value line"),
    (f"[xenhost1]\n{HOST_LINES}centos.template {SECRET}\n", 7, "not a key=value line"),
    (f"{SECRET}\n[xenhost1]\n{HOST_LINES}", 1, "text before the first [section]"),
    (f"[common]\nvm.expiry.minutes={SECRET}\n[xenhost1]\n{HOST_LINES}", 2,
     "[common] vm.expiry.minutes: must be a whole number"),
    (f"[common]\nbackground.leader.ttl.secs={SECRET}\n[xenhost1]\n{HOST_LINES}", 2,
     "[common] background.leader.ttl.secs: must be a number"),
    (f"[xenhost1]\n{HOST_LINES}host.tls.verify={SECRET}\n", 7,
     "[xenhost1] host.tls.verify: must be true or false"),
    (f"[xenhost1]\n{HOST_LINES}host.tls.ca=/{SECRET}/ca.pem\n", 7,
     "[xenhost1] host.tls.ca: "),
    (f"[xenhost1]\n{HOST_LINES.replace('10.0.0.1', f'ftp://{SECRET}')}", 2,
     "[xenhost1] host.name: scheme must be http or https"),
    (f"[xenhost1]\n{HOST_LINES.replace('10.0.0.1', f'https://{SECRET}:x')}", 2,
     "[xenhost1] host.name: has a bad port"),
    (f"[xenhost1]\n{HOST_LINES.replace('10.0.0.1', SECRET)}"
     f"[xenhost2]\n{HOST_LINES.replace('10.0.0.1', SECRET)}", 8,
     "[xenhost2] host.name: same host as [xenhost1]"),
    (f"[xenhost1]\n{HOST_LINES}[store]\nbackend={SECRET}\n", 8,
     "[store] backend: must be sqlite or couchbase"),
    (f"[xenhost1]\n{HOST_LINES}[auth]\nlegacy={SECRET}\n", 8,
     "[auth] legacy: must be one of open, mutating, all"),
    (f"[xenhost1]\n{HOST_LINES}[pool centos]\nready=1\nlabels={SECRET}\n", 9,
     "[pool centos] labels: no host serving centos has any of these labels"),
]


@pytest.mark.parametrize(("text", "line", "named"), NO_ECHO)
def test_config_errors_name_the_place_and_never_echo_a_value(text: str, line: int,
                                                             named: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "farm.ini", env={})
    report = str(info.value)
    assert SECRET.lower() not in report.lower(), report
    assert f"farm.ini:{line}: " in report and named in report, report


def test_no_value_of_a_broken_file_reaches_health_log_or_check_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the service on the simulator: a reload refused for a malformed line, with a
    secret-looking key or none, or for a bad value, shows the place and never the text."""
    farm = Farm.generate(pools=1, hosts=1, speed=200).start()
    ini = tmp_path / "dynvm.ini"
    good = Ini.of_farm(farm).sqlite_store(tmp_path).text()
    ini.write_text(good)
    svc = build_service(str(ini), background=False)
    watcher = cast(Any, svc)._rt._config.__self__  # the ConfigWatcher whose method it is
    line = good.splitlines().index("[xenhost1]") + 2  # the line inserted after the header
    try:
        client = create_app(service=svc).test_client()
        assert client.get("/health").status_code == 200
        caplog.set_level(logging.DEBUG)
        for bad in (f"host.password {SECRET}", f"xen.pw {SECRET}", SECRET,
                    f"host.tls.verify={SECRET}"):
            caplog.clear()
            ini.write_text(good.replace("[xenhost1]\n", f"[xenhost1]\n{bad}\n", 1))
            assert watcher.reload() is False
            body = client.get("/health").get_data(as_text=True)
            error = json.loads(body)["config"]["error"]
            assert f"{ini}:{line}: " in error, error
            checked = CliRunner().invoke(main, ["check-config", str(ini)])
            assert checked.exit_code == 2 and f"{ini}:{line}: " in checked.output
            for shown in (body, caplog.text, checked.output):
                assert SECRET not in shown, (bad, shown)
    finally:
        svc.close()
        farm.stop()


HOST = "host.name=10.0.0.1\nhost.user=root\nhost.password=x\nhost.storage.name=Local storage\n"


@pytest.mark.parametrize("value", ["\u0661\u0660", "1_0", "\uff15"])
def test_config_numbers_are_ascii_digits_only(value: str) -> None:
    with pytest.raises(ConfigError, match="vm.expiry.minutes"):
        parse_config(f"[common]\nvm.expiry.minutes={value}\n\n[xenhost1]\n{HOST}"
                     "centos.template=t\n", env={})
    with pytest.raises(ConfigError, match="centos.vcpus"):
        parse_config(f"[xenhost1]\n{HOST}centos.template=t\ncentos.vcpus={value}\n", env={})


def test_host_section_number_is_ascii() -> None:
    cfg = parse_config(f"[xenhost1]\n{HOST}centos.template=t\n", env={})
    assert list(cfg.hosts) == [1]
    with pytest.raises(ConfigError):
        parse_config(f"[xenhost\u0661]\n{HOST}centos.template=t\n", env={})


def test_password_in_host_url_is_refused_without_echo() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(f"[xenhost1]\nhost.name=https://root:{SECRET}@10.0.0.1\nhost.user=root\n"
                     "host.password=x\nhost.storage.name=L\ncentos.template=t\n", env={})
    assert SECRET not in str(info.value)
    assert "host.name" in str(info.value) and "password" in str(info.value)
