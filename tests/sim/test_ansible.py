"""Ansible's XenServer modules (community.general, from the `ansible` package)
run a plain playbook end to end against the simulator: create a VM from a
template and wait for its address, read it back, change its vCPUs, suspend,
resume, power it off, read the host's facts and remove it.

`xenserver_facts` only ever talks to xapi's local socket in dom0
(/var/lib/xcp/xapi), so the playbook runs in a private mount namespace where
that path leads to the simulator's local socket; nothing outside the test
changes.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from dynvm.sim import Farm

from .conftest import fast_timing, login

pytestmark = [
    pytest.mark.external,
    pytest.mark.skipif(
        importlib.util.find_spec("ansible") is None or shutil.which(
            "ansible-playbook", path=str(Path(sys.executable).parent)) is None,
        reason="ansible is not installed"),
]

SPEED = 20000.0  # a Linux guest boots and takes its address in a few milliseconds

PLAYBOOK = """
- name: A VM's life through community.general's XenServer modules
  hosts: localhost
  connection: local
  gather_facts: false
  module_defaults:
    community.general.xenserver_guest: &xapi
      hostname: "{url}"
      username: root
      password: xenroot
      validate_certs: false
    community.general.xenserver_guest_info: *xapi
    community.general.xenserver_guest_powerstate: *xapi
  tasks:
    - name: Create a VM from a template and wait for its address
      community.general.xenserver_guest:
        name: ansible-vm
        template: tmpl-cnt7.9
        state: poweredon
        hardware:
          num_cpus: 2
          memory_mb: 1024
        disks:
          - size_gb: 10
            sr: Local storage
        networks:
          - name: Pool-wide network associated with eth0
        wait_for_ip_address: true
      register: created

    - name: The VM runs with its address, disk and network
      ansible.builtin.assert:
        that:
          - created.changed
          - created.instance.state == "poweredon"
          - created.instance.networks[0].ip is match("127[.]")
          - created.instance.disks | length == 1
          - created.instance.disks[0].size == 10737418240

    - name: Read it back
      community.general.xenserver_guest_info:
        name: ansible-vm
      register: info

    - name: It is what was asked for
      ansible.builtin.assert:
        that:
          - info.instance.hardware.num_cpus == 2
          - info.instance.hardware.memory_mb == 1024
          - info.instance.networks[0].ip == created.instance.networks[0].ip

    - name: Change its vCPUs (it is shut down for that, then started again)
      community.general.xenserver_guest:
        name: ansible-vm
        hardware:
          num_cpus: 4
        force: true
        wait_for_ip_address: true
      register: cpus

    - name: It has four vCPUs and runs again
      ansible.builtin.assert:
        that:
          - cpus.changed
          - cpus.instance.hardware.num_cpus == 4
          - cpus.instance.state == "poweredon"
          - cpus.instance.networks[0].ip is match("127[.]")

    - name: Suspend it
      community.general.xenserver_guest_powerstate:
        name: ansible-vm
        state: suspended
      register: suspended

    - name: Resume it
      community.general.xenserver_guest_powerstate:
        name: ansible-vm
        state: powered-on
        wait_for_ip_address: true
      register: resumed

    - name: It was suspended, then resumed with its address
      ansible.builtin.assert:
        that:
          - suspended.changed and suspended.instance.state == "suspended"
          - resumed.changed and resumed.instance.state == "poweredon"
          - resumed.instance.networks[0].ip == created.instance.networks[0].ip

    - name: Power it off
      community.general.xenserver_guest_powerstate:
        name: ansible-vm
        state: powered-off
      register: powered_off

    - name: Read the host's facts
      community.general.xenserver_facts:

    - name: The facts show the halted VM and the host's storage
      ansible.builtin.assert:
        that:
          - powered_off.instance.state == "poweredoff"
          - xs_vms["ansible-vm"].power_state == "Halted"
          - xs_vms["ansible-vm"].VCPUs_max == "4"
          - "'Local storage' in xs_srs"
          - "'eth0' in xs_pifs"

    - name: Remove it
      community.general.xenserver_guest:
        name: ansible-vm
        state: absent
      register: removed

    - name: It is gone
      ansible.builtin.assert:
        that:
          - removed.changed
"""


def _in_private_mounts(sock: Path, command: list[str]) -> list[str]:
    """`command` where /var/lib/xcp/xapi leads to `sock`, in a mount namespace
    of its own (as root, or mapped to root where the kernel lets users do so)."""
    script = ('mount -t tmpfs tmpfs /var/lib && mkdir /var/lib/xcp && '
              'ln -s "$0" /var/lib/xcp/xapi && exec "$@"')
    unshare = ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "--mount",
                                                                 "--map-root-user"]
    return [*unshare, "sh", "-c", script, str(sock), *command]


def test_playbook_runs_green_against_the_simulator(tmp_path: Path) -> None:
    # XenAPI's local transport spells the socket path with "_" for "/".
    sock_dir = Path("/tmp") / f"dynvmsim{uuid.uuid4().hex}"
    sock_dir.mkdir()
    try:
        with Farm.generate(pools=1, hosts=1, timing=fast_timing(speed=SPEED)) as farm:
            farm.serve_local_socket(str(sock_dir / "xapi"))
            master = farm.pools[0].master
            x = login(master.url).xenapi
            vdis_before = len(x.VDI.get_all())
            playbook = tmp_path / "playbook.yml"
            playbook.write_text(PLAYBOOK.format(url=master.url))
            env = {**os.environ, "ANSIBLE_HOME": str(tmp_path / "ansible"),
                   "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
                   "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
                   "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0", "ANSIBLE_PIPELINING": "1",
                   "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0"}
            bindir = Path(sys.executable).parent
            command = [str(bindir / "ansible-playbook"), "-i", "localhost,", str(playbook)]
            done = subprocess.run(_in_private_mounts(sock_dir / "xapi", command), env=env,
                                  capture_output=True, text=True, timeout=240)
            assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
            assert "failed=0" in done.stdout
            # The VM and every disk it had are gone from the farm.
            assert x.VM.get_by_name_label("ansible-vm") == []
            assert len(x.VDI.get_all()) == vdis_before
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)
