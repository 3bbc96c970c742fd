"""Owners' keys on their VMs, end to end: dynvm served by gunicorn on the
simulator, its guests checked with paramiko.

One served instance for all the checks (they use different owners, OSes and
names): a v1 request with a key (config drive: the key works, another does
not, the hostname is the VM's name, the cloud-config is the owner's to see); a
key registered once reaching a legacy request made with the owner's token; a
warm hand-out given the key over SSH; a failed upload leaving no disk; the
release destroying the drive; `dynvm ssh` logging in with the owner's key.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
import requests
from click.testing import CliRunner

from dynvm.cli import main
from dynvm.core import tokens
from dynvm.runtime.bootstrap import build_service
from dynvm.sim import Farm
from dynvm.store.sqlite import SqliteStore
from tests.service.conftest import FarmProbe, _release_everything, served, wait_until, write_ini
from tests.support.guest_ssh import can_log_in

pytestmark = pytest.mark.served

GUEST_USER, GUEST_PASSWORD = "root", "guest-pw"


@pytest.fixture(scope="module")
def keyed_farm() -> Iterator[tuple[Farm, int]]:
    from testbed.serving import free_port

    port = free_port()
    with Farm.generate(pools=1, hosts=2, speed=400, guest_ssh_port=port,
                       guest_logins={GUEST_USER: GUEST_PASSWORD}) as farm:
        yield farm, port


def pkey_line(key: paramiko.PKey, comment: str) -> str:
    return f"{key.get_name()} {key.get_base64()} {comment}"


def logs_in(ip: str, port: int, **auth: Any) -> bool:
    return can_log_in(ip, port, GUEST_USER, **auth)


def drives(probe: FarmProbe) -> list[dict]:
    s = probe.session()
    try:
        return [r for r in s.xenapi.VDI.get_all_records().values()
                if "dynvm_config_drive" in r["other_config"]]
    finally:
        s.xenapi.session.logout()


def reported_hostname(probe: FarmProbe, name: str) -> str:
    s = probe.session()
    try:
        x = s.xenapi
        vm = x.VM.get_by_name_label(name)[0]
        return x.VM_guest_metrics.get_netbios_name(x.VM.get_guest_metrics(vm)).get("host_name", "")
    finally:
        s.xenapi.session.logout()


def test_owners_keys_reach_their_vms(tmp_path: Path, keyed_farm: tuple[Farm, int]) -> None:
    farm, port = keyed_farm
    probe = FarmProbe(farm)
    before = probe.state()
    ini = write_ini(tmp_path, farm, extra="[auth]\nlegacy=mutating\n\n[pool centos7]\nready=1\n",
                    common={"vm.linux.username": GUEST_USER, "vm.linux.password": GUEST_PASSWORD,
                            "vm.ssh.port": port, "vm.password.login": False})
    text = ini.read_text().replace("centos.template=", "centos.cloudinit=true\ncentos.template=")
    ini.write_text(text)
    store = SqliteStore(str(tmp_path / "dynvm.sqlite"))
    secrets = {o: tokens.create(store, o, admin=o == "ops")[0] for o in ("team-a", "team-b", "ops")}
    store.close()
    a, b, other = (paramiko.ECDSAKey.generate() for _ in range(3))
    with served(ini, workers=2, log=tmp_path / "serve.log") as (base, _):
        def api(method: str, path: str, owner: str = "team-a", **kw: Any) -> requests.Response:
            return requests.request(method, f"{base}/api/v1{path}", timeout=60,
                                    headers={"Authorization": f"Bearer {secrets[owner]}"}, **kw)

        # A key registered once (again: 200), listed; a bad one refused by name.
        assert api("POST", "/keys", json={"key": pkey_line(a, "alice@laptop")}).status_code == 201
        assert api("POST", "/keys", json={"key": pkey_line(a, "again")}).status_code == 200
        bad = api("POST", "/keys", json={"key": "ssh-rsa " + a.get_base64() + " mislabelled"})
        assert bad.status_code == 422 and "declared ssh-rsa" in bad.json()["detail"]
        assert a.get_base64() not in bad.text
        listed = api("GET", "/keys").json()["keys"]
        assert [k["comment"] for k in listed] == ["alice@laptop"]

        # v1, config drive: its own key and the registered one; the hostname is its name.
        user_data = "#cloud-config\npackages: [git]\n"
        refused = api("POST", "/requests", json={"os": "centos", "ssh_keys": ["ssh-ed25519 AAAA"]})
        assert refused.status_code == 422 and refused.json()["detail"].startswith("ssh_keys[0]")
        made = api("POST", "/requests", json={"os": "centos", "name": "keyed", "ssh_keys": [
            pkey_line(b, "ci")], "user_data": user_data})
        assert made.status_code == 202, made.text
        rid = made.json()["id"]
        done = wait_until(lambda: (r := api("GET", f"/requests/{rid}?wait=10").json())["state"]
                          != "running" and r, timeout=120, what="the keyed request")
        assert done["state"] == "done", done
        assert done["user_data"] == user_data and len(done["ssh_keys"]) == 2
        assert api("GET", f"/requests/{rid}", "team-b").status_code == 404
        assert api("GET", f"/requests/{rid}", "ops").json()["user_data"] == user_data
        ip = done["vms"][0]["ip"]
        assert logs_in(ip, port, pkey=b) and logs_in(ip, port, pkey=a)
        assert not logs_in(ip, port, pkey=other)
        assert not logs_in(ip, port, password=GUEST_PASSWORD)  # vm.password.login=false
        assert reported_hostname(probe, "keyed") == "keyed"
        assert len(drives(probe)) == 1
        # Neither the dashboard (even an admin's) nor history carries the cloud-config or a key.
        admin = {"Authorization": f"Bearer {secrets['ops']}"}
        board = requests.get(f"{base}/ui/api/requests?hours=1", headers=admin, timeout=30)
        assert board.status_code == 200 and rid in board.text
        assert "packages" not in board.text and b.get_base64() not in board.text
        hist = api("GET", "/history", "ops").text
        assert '"keyed"' in hist and b.get_base64() not in hist and a.get_base64() not in hist
        assert "packages" not in hist

        # `dynvm ssh`: the owner's key found in ~/.ssh, the command printed, then run.
        home = tmp_path / "home"
        (home / ".ssh").mkdir(parents=True)
        b.write_private_key_file(str(home / ".ssh" / "id_ecdsa"))
        (home / ".ssh" / "id_ecdsa.pub").write_text(pkey_line(b, "ci") + "\n")
        env = {"DYNVM_URL": base, "DYNVM_TOKEN": secrets["team-a"], "HOME": str(home),
               "DYNVM_CLIENT_CONFIG": "/nonexistent"}
        printed = CliRunner().invoke(main, ["ssh", "keyed", "--print"], env=env)
        assert printed.exit_code == 0, printed.output
        cmd = shlex.split(printed.output)
        assert cmd[-1] == f"{GUEST_USER}@{ip}" and str(home / ".ssh" / "id_ecdsa") in cmd
        ran = subprocess.run([*cmd, "-o", "BatchMode=yes", "cat .ssh/authorized_keys"],
                             capture_output=True, text=True, timeout=60)
        assert ran.returncode == 0 and b.get_base64() in ran.stdout, ran.stderr

        # Legacy, with the owner's token: the registered key, on a cold cloud-init build ...
        legacy = requests.get(f"{base}/getservers/lgc?os=centos&token={secrets['team-a']}",
                              timeout=120)
        assert legacy.status_code == 200, legacy.text
        assert logs_in(legacy.json()[0], port, pkey=a)
        # ... and on a warm VM, over SSH, before the answer.
        # (the available count also counts free room: the pool's own gauge says it is ready)
        wait_until(lambda: 'dynvm_warm_pool_ready{os="centos7"} 0.0' not in
                   (m := requests.get(f"{base}/metrics", timeout=30).text)
                   and 'dynvm_warm_pool_ready{os="centos7"}' in m,
                   timeout=120, what="the warm pool to fill")
        warm = requests.get(f"{base}/getservers/wrm?os=centos7&format=detailed"
                            f"&token={secrets['team-a']}", timeout=120)
        assert warm.status_code == 200, warm.text
        warm_ip = warm.json()["wrm"]
        assert logs_in(warm_ip, port, pkey=a) and not logs_in(warm_ip, port, pkey=other)
        assert not logs_in(warm_ip, port, password=GUEST_PASSWORD)
        assert reported_hostname(probe, "wrm") == "wrm"
        history = api("GET", "/history").json()
        assert any(d.get("name") == "wrm" and d.get("from_warm_pool") for d in history["items"])

        # A failed upload: the VM fails, no disk is left behind.
        vdis = len(drives(probe))
        farm.fail_next("import_raw_vdi", 1, "SR_BACKEND_FAILURE_44", ["", "no space", ""])
        failed = api("POST", "/requests", "team-b", json={"os": "centos", "name": "nodisk"})
        assert failed.status_code == 202
        fid = failed.json()["id"]
        end = wait_until(lambda: (r := api("GET", f"/requests/{fid}?wait=10", "team-b").json())
                         ["state"] != "running" and r, timeout=120, what="the failing request")
        assert end["state"] == "failed" and "SR_BACKEND_FAILURE_44" in end["vms"][0]["reason"]
        assert len(drives(probe)) == vdis and probe.vms_named("nodisk") == []

        # Release destroys the drive with the VM.
        assert api("DELETE", "/vms/keyed").status_code == 200
        wait_until(lambda: len(drives(probe)) == vdis - 1, timeout=60,
                   what="the released VM's drive to be destroyed")
        assert api("DELETE", f"/keys/{listed[0]['id']}").status_code == 200
        assert api("GET", "/keys").json()["keys"] == []
    log = (tmp_path / "serve.log").read_text()
    assert "getservers" in log  # the log is there, and says what happened ...
    for secret in (a.get_base64(), b.get_base64(), "packages: [git]"):
        assert secret not in log  # ... without a key or the cloud-config
    leftover = build_service(str(ini), background=False)
    try:
        _release_everything(leftover)
    finally:
        leftover.close()
    wait_until(lambda: probe.state() == before, timeout=30,
               what="the farm to be back to its state before the test")
    assert drives(probe) == []
