"""Simulated guests behave like cloud-init images: a `cidata` drive attached
at first boot puts its keys on the guest's SSH server and its hostname in the
guest metrics; without one nothing changes. Commands sent over SSH change the
image the same way."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import paramiko
import pytest

from dynvm.sim import Farm
from dynvm.sim.guestimage import GuestImage
from dynvm.sim.oscatalog import OS_CATALOG
from dynvm.xen.configdrive import seed_iso
from testbed.serving import free_port
from tests.support.guest_ssh import can_log_in

from .conftest import fast_timing, login, wait_for
from .test_raw_import import local_sr, new_vdi, put
from .test_vm_life import guest_ip, point_disks_at, wait_task

PASSWORD = "guest-pw"


def ssh(ip: str, port: int, user: str, *, key: paramiko.PKey | None = None,
        password: str | None = None) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(ip, port, user, password=password, pkey=key, timeout=10,
                   allow_agent=False, look_for_keys=False)
    return client


def refused(ip: str, port: int, user: str, *, key: paramiko.PKey | None = None,
            password: str | None = None) -> bool:
    return not can_log_in(ip, port, user, pkey=key, password=password)


def line(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()} test@key"


@pytest.fixture(scope="module")
def keys() -> list[paramiko.PKey]:
    return [paramiko.ECDSAKey.generate() for _ in range(3)]


@pytest.fixture
def guest_farm() -> Iterator[tuple[Farm, int]]:
    port = free_port()
    with Farm.generate(pools=1, hosts=1, timing=fast_timing(), guest_ssh_port=port,
                       guest_logins={"root": PASSWORD, "ci": PASSWORD}) as farm:
        yield farm, port


def boot(farm: Farm, name: str, drive: bytes | None) -> tuple[Any, str, str]:
    """Clone, provision, maybe attach `drive` (uploaded), start: (xenapi, vm, its address)."""
    session = login(farm.pools[0].master.url)
    x = session.xenapi
    template = x.VM.get_by_name_label(OS_CATALOG["centos"].template_name)[0]
    vm = wait_task(x, x.Async.VM.clone(template, name))["result"][7:-8]
    sr = local_sr(x, "xenhost1-1")
    point_disks_at(x, vm, x.SR.get_uuid(sr))
    x.VM.provision(vm)
    if drive is not None:
        vdi = new_vdi(x, sr)
        task = x.task.create("config drive", "")
        assert put(farm.pools[0].master.url,
                   {"session_id": session.handle, "vdi": vdi, "task_id": task}, drive).status == 200
        assert wait_task(x, task)["status"] == "success"
        x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "autodetect", "bootable": False,
                      "mode": "RW", "type": "Disk", "empty": False, "other_config": {},
                      "qos_algorithm_type": "", "qos_algorithm_params": {}})
    host = x.host.get_by_name_label("xenhost1-1")[0]
    network = x.PIF.get_network(next(p for p in x.host.get_PIFs(host)
                                     if x.PIF.get_device(p) == "eth0"))
    x.VIF.create({"device": "0", "network": network, "VM": vm, "MAC": "", "MTU": "1500",
                  "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}})
    x.VM.start(vm, False, False)
    return x, vm, wait_for(lambda: guest_ip(x, vm), 10)


def host_name(x: Any, vm: str) -> dict[str, str]:
    return x.VM_guest_metrics.get_netbios_name(x.VM.get_guest_metrics(vm))


def test_a_cidata_drive_sets_keys_and_hostname_on_first_boot(
        guest_farm: tuple[Farm, int], keys: list[paramiko.PKey]) -> None:
    farm, port = guest_farm
    user_data = "\n".join([
        "#cloud-config", "hostname: web-7", "ssh_authorized_keys:", f"  - {line(keys[0])}",
        "users:", "  - default", "  - name: ci", "    ssh_authorized_keys:",
        f"      - {line(keys[1])}", "ssh_pwauth: false", ""])
    x, vm, ip = boot(farm, "seeded", seed_iso("instance-id: i-1\nlocal-hostname: meta\n",
                                                 user_data))
    assert host_name(x, vm) == {"host_name": "web-7"}  # user-data's hostname wins
    ssh(ip, port, "root", key=keys[0]).close()  # the image's default user: the first login
    ssh(ip, port, "ci", key=keys[1]).close()
    assert refused(ip, port, "root", key=keys[1]) and refused(ip, port, "ci", key=keys[0])
    assert refused(ip, port, "root", key=keys[2])
    assert refused(ip, port, "root", password=PASSWORD)  # ssh_pwauth: false
    # A reboot is no first boot: the instance was configured already and stays so.
    x.VM.hard_reboot(vm)
    wait_for(lambda: guest_ip(x, vm) is not None, 10)
    ssh(ip, port, "root", key=keys[0]).close()
    assert host_name(x, vm) == {"host_name": "web-7"}


def test_without_a_drive_nothing_changes(guest_farm: tuple[Farm, int],
                                         keys: list[paramiko.PKey]) -> None:
    farm, port = guest_farm
    x, vm, ip = boot(farm, "plain", None)
    assert host_name(x, vm) == {}
    assert refused(ip, port, "root", key=keys[0])
    ssh(ip, port, "root", password=PASSWORD).close()
    # Not a cidata volume, or meta-data without an instance id: no seed either.
    for drive in (seed_iso("instance-id: i-2\n", "#cloud-config\nhostname: x\n", "OTHER"),
                  seed_iso("local-hostname: x\n", "#cloud-config\nhostname: x\n")):
        x, vm, ip = boot(farm, "not-seeded", drive)
        assert host_name(x, vm) == {}
        ssh(ip, port, "root", password=PASSWORD).close()


def test_commands_over_ssh_install_keys_rename_and_lock(
        guest_farm: tuple[Farm, int], keys: list[paramiko.PKey]) -> None:
    farm, port = guest_farm
    x, vm, ip = boot(farm, "warm", None)
    client = ssh(ip, port, "ci", password=PASSWORD)
    try:
        def run(command: str, stdin: bytes = b"") -> tuple[int, bytes, bytes]:
            i, o, e = client.exec_command(command, timeout=10)
            i.write(stdin)
            i.channel.shutdown_write()
            return o.channel.recv_exit_status(), o.read(), e.read()

        keys_in = f"{line(keys[0])}\n".encode()
        assert run("umask 077 && mkdir -p .ssh && cat >> .ssh/authorized_keys", keys_in)[0] == 0
        assert run("cat ~/.ssh/authorized_keys") == (0, keys_in, b"")
        assert run("hostnamectl set-hostname web-9")[0] == 1  # not as ci
        assert run("sudo -n hostnamectl set-hostname web-9")[0] == 0
        assert run("sudo -n passwd -l ci")[0] == 0
        status, _, err = run("frobnicate --all")
        assert status == 127 and b"command not found" in err
    finally:
        client.close()
    ssh(ip, port, "ci", key=keys[0]).close()
    assert refused(ip, port, "ci", password=PASSWORD)
    ssh(ip, port, "root", password=PASSWORD).close()  # another user's password still works
    assert host_name(x, vm) == {"host_name": "web-9"}


def test_an_image_appends_keys_once() -> None:
    image = GuestImage()
    image.add_keys("root", ["ssh-ed25519 AAAA one", "ssh-ed25519 AAAA two"])
    image.add_keys("root", ["ssh-ed25519 BBBB"])
    assert image.authorized("root") == [("ssh-ed25519", "AAAA"), ("ssh-ed25519", "BBBB")]
    assert image.authorized("ci") == []
