"""The first-boot document: the owner's cloud-config with dynvm's keys,
hostname and password setting merged in; what is refused and why."""

from __future__ import annotations

import pytest
import yaml

from dynvm.core.cloudinit import (
    BadHostname,
    BadUserData,
    check_hostname,
    check_user_data,
    first_boot,
    hostname_for,
    user_data,
)

K1, K2 = "ssh-ed25519 AAAAone a", "ssh-ed25519 AAAAtwo b"


def parsed(text: str) -> dict:
    assert text.startswith("#cloud-config\n")
    return yaml.safe_load(text)


def test_keys_go_to_the_default_user_and_the_login_user() -> None:
    owner = check_user_data("#cloud-config\npackages: [git]\nssh_authorized_keys: [" + K2 + "]\n"
                            "users:\n  - default\n  - name: ci\n    ssh_authorized_keys: [x]\n")
    doc = parsed(user_data([K1, K2], "web-1", owner, login_user="ci", password_login=True))
    assert doc["packages"] == ["git"] and doc["hostname"] == "web-1"
    assert doc["ssh_authorized_keys"] == [K2, K1]
    assert doc["users"] == ["default", {"name": "ci", "ssh_authorized_keys": ["x", K1, K2]}]
    assert "ssh_pwauth" not in doc and "disable_root" not in doc
    root = parsed(user_data([K1], "h", None, login_user="root", password_login=False))
    assert root == {"ssh_authorized_keys": [K1], "disable_root": False, "hostname": "h",
                    "ssh_pwauth": False}
    other = parsed(user_data([K1], "h", None, login_user="admin", password_login=True))
    assert other["users"] == ["default", {"name": "admin", "ssh_authorized_keys": [K1]}]
    assert parsed(user_data([], "h", None, login_user="root", password_login=False)) == {
        "hostname": "h"}  # no keys: passwords stay, or nobody could log in
    boot = first_boot([K1], "web-2", None, login_user=None, password_login=True)
    assert boot.hostname == "web-2" and parsed(boot.user_data)["ssh_authorized_keys"] == [K1]
    assert K1 not in repr(boot)


@pytest.mark.parametrize(("text", "why"), [
    ("packages: [git]\n", "first line '#cloud-config'"),
    ("", "first line"),
    ("#cloud-config\nfoo: [unclosed\n", "not valid YAML at line"),
    ("#cloud-config\n- a\n- b\n", "a YAML mapping"),
    ("#cloud-config\nhostname: x\n", "give it as the request's hostname"),
    ("#cloud-config\nrunc: '" + "x" * 16400 + "'\n", "over 16 KiB"),
])
def test_refused_user_data(text: str, why: str) -> None:
    with pytest.raises(BadUserData, match=why) as exc:
        check_user_data(text)
    assert "unclosed" not in str(exc.value)


def test_empty_cloud_config_is_an_empty_mapping() -> None:
    assert check_user_data("#cloud-config\n") == {}


def test_hostnames() -> None:
    assert check_hostname("Web-1.ci.example") == "web-1.ci.example"
    for bad in ("-web", "web_1", "a" * 64, "a..b", "", "x" * 254):
        with pytest.raises(BadHostname):
            check_hostname(bad)
    assert hostname_for("CI_job.42") == "ci-job-42"
    assert hostname_for("___") == "vm"
    check_hostname(hostname_for("x" * 100 + "-"))
