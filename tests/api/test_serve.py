"""`dynvm serve` for real: gunicorn workers answering over HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import XenAPI

from testbed.inis import Ini
from testbed.processes import GroupProcess
from testbed.serving import serve_command

pytestmark = pytest.mark.served

LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
HANDED_OUT = re.compile(r'^dynvm_vms_handed_out_total\{os="centos"\} (\S+)$', re.M)


class Server:
    def __init__(self, proc: GroupProcess, log: Path) -> None:
        self.proc = proc
        self.log = log
        self.url = ""

    def wait_listening(self, secs: float = 60.0) -> str:
        deadline = time.monotonic() + secs
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            m = LISTENING.search(text)
            if m:
                self.url = f"http://127.0.0.1:{m.group(1)}"
                return self.url
            assert self.proc.poll() is None, f"dynvm serve exited early:\n{text}"
            time.sleep(0.05)
        raise AssertionError(f"dynvm serve did not listen:\n{self.log.read_text()}")

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=60)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    servers: list[Server] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Server:
        log = tmp_path / f"serve-{len(servers)}.log"
        full_env = {k: v for k, v in os.environ.items() if k != "DYNVM_CONFIG"}
        full_env.update(env or {})
        with open(log, "wb") as out:
            proc = GroupProcess(
                serve_command("--bind", "127.0.0.1:0", *args),
                cwd=tmp_path, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        server = Server(proc, log)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _exercise(server: Server) -> None:
    """Ask both workers for VMs; check answers, metrics summed over workers, release."""
    for i in range(4):
        resp = server.get(f"/getservers/srv{i}?os=centos&format=detailed")
        assert resp.status_code == 200, resp.text
        assert resp.headers["Content-Type"] == "application/json"
        assert list(json.loads(resp.text)) == [f"srv{i}"]
    assert server.get("/getservers/srv?count=0").status_code == 400
    # Every scrape, whichever worker answers it, sees all four VMs.
    for _ in range(4):
        metrics = server.get("/metrics").text
        m = HANDED_OUT.search(metrics)
        assert m and float(m.group(1)) == 4.0, metrics[:2000]
    for i in range(4):
        resp = server.get(f"/releaseservers/srv{i}")
        assert resp.status_code == 200, resp.text
        assert json.loads(resp.text) == [f"srv{i}"]
    health = server.get("/health")
    assert health.status_code == 200, health.text


def test_serve_with_config(serve, tmp_path: Path) -> None:
    from dynvm.sim.farm import Farm

    farm = Farm.generate(pools=1, hosts=2, speed=200).start()
    try:
        ini = Ini.of_farm(farm).sqlite_store(tmp_path).write(tmp_path / "dynvm.ini")
        server = serve("--workers", "2", env={"DYNVM_CONFIG": str(ini)})
        server.wait_listening()
        _exercise(server)
        assert server.stop() == 0
        log = server.log.read_text()
        assert "Traceback" not in log, log
        port = server.url.rsplit(":", 1)[1]
        assert f"curl '127.0.0.1:{port}/getservers/demo?os=centos&count=3'" in log
        assert "Control socket" not in log
    finally:
        farm.stop()


def test_serve_embedded_farm(serve, tmp_path: Path) -> None:
    server = serve("--workers", "2", "--sim-speed", "200")
    server.wait_listening(secs=90)
    assert (tmp_path / ".dynvm" / "dynvmservice.ini").exists()
    _exercise(server)
    log = server.log.read_text()
    m = re.search(r"embedded simulated farm up \(pid (\d+)", log)
    assert m, log
    farm_pid = int(m.group(1))
    assert server.stop() == 0
    deadline = time.monotonic() + 15
    while _alive(farm_pid):
        assert time.monotonic() < deadline, "the embedded farm outlived dynvm serve"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sim_command_prints_sections_and_stops_on_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "sim.log"
    with open(log, "wb") as out:
        proc = GroupProcess(
            [sys.executable, "-m", "dynvm", "sim", "--hosts", "2", "--pools", "2",
             "--speed", "50"],
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while "[xenhost2]" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        text = log.read_text()
        assert "[xenhost1]" in text and "centos.template=" in text
        addresses = re.findall(r"host\.name=(http://127\.0\.0\.1:\d+)", text)
        assert len(addresses) == 2
        session = XenAPI.Session(addresses[0])
        session.xenapi.login_with_password("root", "xenroot", "1.0", "dynvm-test")
        try:
            assert len(session.xenapi.host.get_all()) == 2
        finally:
            session.xenapi.session.logout()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
