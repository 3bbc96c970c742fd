"""Simulated guests run real SSH servers that accept the farm's guest logins."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import XenAPI

from dynvm.guest.ssh import LoginRefused, ssh_login
from dynvm.sim.guestsshd import GuestPorts
from testbed.serving import free_port, wait_until

GUEST_IP = "127.16.250.9"


def test_guest_sshd_accepts_only_its_logins() -> None:
    port = free_port()
    ports = GuestPorts(port, {"alice": "s3cret"})
    try:
        ports.open(GUEST_IP)
        ssh_login(GUEST_IP, port, "alice", "s3cret", 10.0)
        with pytest.raises(LoginRefused):
            ssh_login(GUEST_IP, port, "alice", "wrong", 10.0)
        with pytest.raises(LoginRefused):
            ssh_login(GUEST_IP, port, "root", "s3cret", 10.0)
        ports.close(GUEST_IP)
        with pytest.raises(OSError):  # the guest stopped: nothing listens
            ssh_login(GUEST_IP, port, "alice", "s3cret", 2.0)
    finally:
        ports.stop()


def _running_guest_ips(url: str) -> list[str]:
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", "xenroot", "1.0", "dynvm-test")
    try:
        x = s.xenapi
        out = []
        for rec in x.VM.get_all_records().values():
            if rec["is_a_template"] or rec["is_control_domain"] or rec["power_state"] != "Running":
                continue
            ip = x.VM_guest_metrics.get_networks(rec["guest_metrics"]).get("0/ip")
            if ip:
                out.append(ip)
        return out
    finally:
        s.xenapi.session.logout()


def test_dynvm_sim_opens_guest_ssh_with_the_given_login(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "sim.log"
    env = {**os.environ, "DYNVM_SIM_GUEST_LOGIN": "ci:guest-pw", "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dynvm", "sim", "--hosts", "1", "--vms-per-host", "2",
             "--speed", "100", "--guest-ssh-port", str(port)],
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env)
    try:
        wait_until(lambda: "[xenhost1]" in log.read_text() or proc.poll() is not None,
                   timeout=60, what="the simulator to print its sections")
        text = log.read_text()
        assert proc.poll() is None, text
        assert f"vm.ssh.port={port}" in text and "guest-pw" not in text
        url = re.search(r"host\.name=(http://127\.0\.0\.1:\d+)", text)
        assert url is not None, text
        ips = _running_guest_ips(url.group(1))
        assert len(ips) == 2
        for ip in ips:
            ssh_login(ip, port, "ci", "guest-pw", 10.0)
        with pytest.raises(LoginRefused):
            ssh_login(ips[0], port, "ci", "nope", 10.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
