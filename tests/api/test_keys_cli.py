"""`dynvm keys` and `dynvm ssh` at the HTTP edge: what they send, what they print,
and their error paths (`requests-mock` stands in for the server; the happy
paths run served in tests/service/test_keys_served.py)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import paramiko
import pytest
import requests
import requests_mock
from click.testing import CliRunner

from dynvm.cli import main
from dynvm.cli.keys import fingerprint_of
from dynvm.client import http as client_mod

URL = "http://dynvm.test"
API = URL + "/api/v1"
KEY_OUT = {"id": "abc_-def", "fingerprint": "SHA256:abc/+def", "type": "ssh-ed25519",
           "comment": "alice@laptop", "added": 1.0}


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch) -> None:
    monkeypatch.setattr(client_mod.time, "sleep", lambda s: None)


def run(*args: str, home: Path | None = None, stdin: str | None = None) -> Any:
    env = {"DYNVM_URL": URL, "DYNVM_TOKEN": "dvm_secret", "DYNVM_CLIENT_CONFIG": "/nonexistent"}
    if home is not None:
        env["HOME"] = str(home)
    return CliRunner().invoke(main, list(args), env=env, input=stdin, catch_exceptions=False)


def test_keys_add_sends_each_key_line_of_each_file(tmp_path: Path) -> None:
    pub = tmp_path / "id.pub"
    pub.write_text("# a comment\nssh-ed25519 AAAAone alice@laptop\n\nssh-ed25519 AAAAtwo b\n")
    with requests_mock.Mocker() as m:
        m.post(API + "/keys", [{"json": KEY_OUT, "status_code": 201},
                               {"json": {**KEY_OUT, "comment": "b"}, "status_code": 200}])
        r = run("keys", "add", str(pub))
        assert r.exit_code == 0, r.output
        assert [json.loads(h.text)["key"] for h in m.request_history] == [
            "ssh-ed25519 AAAAone alice@laptop", "ssh-ed25519 AAAAtwo b"]
        assert "SHA256:abc/+def ssh-ed25519 alice@laptop" in r.output


def test_a_refused_key_is_exit_4_with_its_reason() -> None:
    with requests_mock.Mocker() as m:
        m.post(API + "/keys", status_code=422, json={
            "type": "about:blank", "title": "Unprocessable Entity", "status": 422,
            "detail": "key (ssh-rsa, 'old') SHA256:x: RSA keys need at least 2048 bits"})
        r = run("keys", "add", "-", stdin="ssh-rsa AAAAold old\n")
        assert r.exit_code == 4 and "RSA keys need at least 2048 bits" in r.output


def test_keys_list_and_remove_by_fingerprint_or_id() -> None:
    with requests_mock.Mocker() as m:
        m.get(API + "/keys", json={"keys": [KEY_OUT]})
        m.delete(API + "/keys/abc_-def", json=KEY_OUT)
        listed = run("keys", "list", "--json")
        assert listed.exit_code == 0 and json.loads(listed.output) == [KEY_OUT]
        for ident in ("SHA256:abc/+def", "abc_-def"):
            r = run("keys", "remove", ident)
            assert r.exit_code == 0 and "removed SHA256:abc/+def" in r.output
        m.delete(API + "/keys/nosuch", status_code=404, json={"detail": "no key nosuch"})
        r = run("keys", "remove", "nosuch")
        assert r.exit_code == 4 and "no key nosuch" in r.output


VM = {"name": "web", "owner": "team-a", "os": "centos", "state": "active", "ip": "10.0.0.5",
      "host": 1, "created": 1.0, "expires": 2.0, "request_id": "r", "labels": [],
      "ssh_user": "ci", "ssh_port": 2222, "ssh_keys": []}


def test_ssh_print_finds_the_key_the_vm_was_given(tmp_path: Path) -> None:
    ssh_dir = tmp_path / ".ssh"
    ssh_dir.mkdir()
    keys = {}
    for name in ("id_ed25519", "id_ecdsa", "work"):  # ed25519 would be ssh's first pick
        key = paramiko.ECDSAKey.generate()
        key.write_private_key_file(str(ssh_dir / name))
        (ssh_dir / f"{name}.pub").write_text(f"{key.get_name()} {key.get_base64()} x\n")
        keys[name] = fingerprint_of(ssh_dir / f"{name}.pub")
    with requests_mock.Mocker() as m:
        m.get(API + "/vms/web", json={**VM, "ssh_keys": [keys["work"]]})
        r = run("ssh", "web", "--print", home=tmp_path)
        assert r.exit_code == 0, r.output
        cmd = shlex.split(r.output)
        assert cmd[0] == "ssh" and cmd[-1] == "ci@10.0.0.5"
        assert cmd[cmd.index("-p") + 1] == "2222"
        assert cmd[cmd.index("-i") + 1] == str(ssh_dir / "work")
        m.get(API + "/vms/web", json=VM)  # given no key of mine: no -i, ssh decides
        assert "-i" not in shlex.split(run("ssh", "web", "--print", home=tmp_path).output)


def test_ssh_error_paths(tmp_path: Path) -> None:
    with requests_mock.Mocker() as m:
        m.get(API + "/vms/gone", status_code=404, json={"detail": "no VM named gone"})
        r = run("ssh", "gone", "--print", home=tmp_path)
        assert r.exit_code == 4 and "no VM named gone" in r.output
        m.get(API + "/vms/web", json={**VM, "ip": "", "state": "provisioning"})
        r = run("ssh", "web", "--print", home=tmp_path)
        assert r.exit_code == 1 and "has no address yet (provisioning)" in r.output
        m.get(API + "/vms/web", exc=requests.ConnectionError("refused"))
        assert run("ssh", "web", home=tmp_path).exit_code == 3


def test_get_sends_keys_hostname_and_user_data(tmp_path: Path) -> None:
    pub, doc = tmp_path / "ci.pub", tmp_path / "init.yaml"
    pub.write_text("ssh-ed25519 AAAAci ci\n")
    doc.write_text("#cloud-config\npackages: [git]\n")
    req = {"id": "a" * 32, "state": "running", "names": ["web"], "vms": []}
    with requests_mock.Mocker() as m:
        m.post(API + "/requests", status_code=202, json=req)
        r = run("get", "centos", "--name", "web", "--ssh-key", str(pub), "--hostname", "web",
                "--user-data", str(doc))
        assert r.exit_code == 0, r.output
        assert m.last_request.json() == {
            "os": "centos", "count": 1, "name": "web", "ssh_keys": ["ssh-ed25519 AAAAci ci"],
            "hostname": "web", "user_data": "#cloud-config\npackages: [git]\n"}
