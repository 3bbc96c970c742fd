"""Secrets from the INI file never reach /health, the log or an error body,
even when the line holding one is malformed."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from dynvm.api import create_app
from dynvm.config import ConfigError, parse_config
from dynvm.runtime.bootstrap import build_service
from dynvm.sim import Farm
from tests.support.harness import wait_until
from tests.support.inis import Ini

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


def test_ordinary_malformed_line_is_still_quoted() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("[xenhost1]\ncentos.template tmpl-cnt7.7\n", env={})
    assert "'centos.template tmpl-cnt7.7'" in str(info.value)


def test_reload_of_a_malformed_secret_line_keeps_it_out_of_health_and_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    farm = Farm.generate(pools=1, hosts=1, speed=200).start()
    ini = tmp_path / "dynvm.ini"
    good = Ini.of_farm(farm).sqlite_store(tmp_path).text()
    ini.write_text(good)
    svc = build_service(str(ini), background=False)
    try:
        client = create_app(service=svc).test_client()
        assert client.get("/health").status_code == 200
        caplog.set_level(logging.DEBUG)
        ini.write_text(good.replace("host.password=", f"host.password {SECRET}\nx.y=", 1))

        def refused() -> bool:
            report = json.loads(client.get("/health").get_data(as_text=True))
            return bool(report["config"].get("error"))

        wait_until(refused, timeout=20, what="the broken file to be refused")
        body = client.get("/health").get_data(as_text=True)
        assert SECRET not in body
        assert "hidden" in body
        assert SECRET not in caplog.text
        assert "hidden" in caplog.text
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
