"""What runs inside simulated VMs: their OS identity, DHCP leases and an
optional SSH server (password logins only) on the guest's loopback address.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import selectors
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import paramiko
from paramiko.common import AUTH_FAILED, AUTH_SUCCESSFUL, OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

from .oscatalog import OS_CATALOG, by_template_name
from .ssh_options import DEFAULT_GUEST_LOGINS

GENERIC_LINUX = {"name": "Linux", "distro": "linux", "major": "0", "minor": "0",
                 "uname": "5.10.0-generic"}
GENERIC_WINDOWS = {"name": "Microsoft Windows Server|C:\\Windows|\\Device\\Harddisk0\\Partition2",
                   "distro": "windows", "major": "10", "minor": "0", "spmajor": "0",
                   "spminor": "0"}


@dataclass(frozen=True)
class GuestOs:
    windows: bool
    os_version: dict[str, str]


def guest_os(vm: dict[str, Any]) -> GuestOs:
    """The OS a VM boots: from its template's catalog key, else a guess from names."""
    oc = vm.get("other_config") or {}
    entry = OS_CATALOG.get(oc.get("dynvm_sim_os", ""))
    if entry is None:
        entry = by_template_name(oc.get("base_template_name", "")) or by_template_name(
            vm.get("name_label", ""))
    if entry is not None:
        return GuestOs(entry.windows, entry.os_version())
    names = " ".join([vm.get("name_label", ""), oc.get("base_template_name", ""),
                      vm.get("name_description", "")]).lower()
    if "win" in names:
        return GuestOs(True, dict(GENERIC_WINDOWS))
    return GuestOs(False, dict(GENERIC_LINUX))


def link_local_for(uuid: str) -> str:
    """A stable 169.254.x.y address, as Windows picks when DHCP gives nothing."""
    h = hashlib.sha1(uuid.encode()).digest()
    return f"169.254.{1 + h[0] % 254}.{1 + h[1] % 254}"


def parse_range(spec: str) -> tuple[int, int] | None:
    """`"127.1.2.10-127.1.2.250"` (or `"...10-250"`) -> inclusive int range."""
    try:
        lo_s, hi_s = (p.strip() for p in spec.split("-", 1))
        lo = int(ipaddress.IPv4Address(lo_s))
        if "." not in hi_s:
            hi_s = lo_s.rsplit(".", 1)[0] + "." + hi_s
        hi = int(ipaddress.IPv4Address(hi_s))
    except (ValueError, AttributeError):
        return None
    return (lo, hi) if lo <= hi else None


class Dhcp:
    """Leases per network, lowest free address first; one lease per VM."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used: dict[str, set[int]] = {}
        self.leases: dict[str, tuple[str, int]] = {}  # vm ref -> (network ref, address)

    def reserve(self, vm: str, network: str, rng: tuple[int, int], ip: str) -> None:
        try:
            value = int(ipaddress.IPv4Address(ip))
        except ValueError:
            return
        if rng[0] <= value <= rng[1]:
            with self._lock:
                self._used.setdefault(network, set()).add(value)
                self.leases[vm] = (network, value)

    def allocate(self, vm: str, network: str, rng: tuple[int, int]) -> str | None:
        with self._lock:
            if vm in self.leases:
                return str(ipaddress.IPv4Address(self.leases[vm][1]))
            used = self._used.setdefault(network, set())
            for value in range(rng[0], rng[1] + 1):
                if value not in used:
                    used.add(value)
                    self.leases[vm] = (network, value)
                    return str(ipaddress.IPv4Address(value))
        return None

    def release(self, vm: str) -> None:
        with self._lock:
            lease = self.leases.pop(vm, None)
            if lease is not None:
                self._used.get(lease[0], set()).discard(lease[1])


SSHD_LOG = "dynvm.sim.guestsshd"
logging.getLogger(SSHD_LOG).setLevel(logging.CRITICAL)


class _GuestSshd(paramiko.ServerInterface):
    """Password logins with the farm's guest credentials; nothing runs after login."""

    def __init__(self, logins: Mapping[str, str]) -> None:
        self.logins = logins

    def get_allowed_auths(self, username: str) -> str:
        return "password"

    def check_auth_password(self, username: str, password: str) -> int:
        ok = username in self.logins and hmac.compare_digest(
            self.logins[username].encode(), password.encode())
        return AUTH_SUCCESSFUL if ok else AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:  # noqa: V107 - paramiko's
        return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


class GuestPorts:
    """SSH servers on (guest IP, port) accepting the farm's guest logins (`logins`).

    Each connection is served by a paramiko transport in server mode: key
    exchange, password authentication, then nothing; enough for a client to
    prove it can log in. One host key (ECDSA, quick to make) serves every guest.
    """

    def __init__(self, port: int, logins: Mapping[str, str] | None = None) -> None:
        self.port = port
        self.logins = dict(DEFAULT_GUEST_LOGINS if logins is None else logins)
        self._host_key = paramiko.ECDSAKey.generate()
        self._transports: dict[str, list[paramiko.Transport]] = {}
        self._sel = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._socks: dict[str, socket.socket] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="sim guest ports", daemon=True)
        self._thread.start()

    def open(self, ip: str) -> None:
        with self._lock:
            if ip in self._socks or self._stopped:
                return
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((ip, self.port))
                s.listen(16)
            except OSError:
                s.close()
                return
            s.setblocking(False)
            self._socks[ip] = s
            self._sel.register(s, selectors.EVENT_READ, ip)
        self._wake_w.send(b"x")

    def close(self, ip: str) -> None:
        with self._lock:
            s = self._socks.pop(ip, None)
            sessions = self._transports.pop(ip, [])
            if s is None:
                return
            self._forget(s)
        for t in sessions:
            t.close()
        self._wake_w.send(b"x")

    def _forget(self, s: socket.socket) -> None:
        """Stop watching and close one guest's listener (lock held)."""
        try:
            self._sel.unregister(s)
        except (KeyError, ValueError):
            pass
        s.close()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            for ip in list(self._socks):
                self._forget(self._socks.pop(ip))
            sessions = [t for ts in self._transports.values() for t in ts]
            self._transports.clear()
        for t in sessions:
            t.close()
        self._wake_w.send(b"x")
        self._thread.join(timeout=5)
        self._wake_r.close()
        self._wake_w.close()

    def _run(self) -> None:
        while not self._stopped:
            try:
                events = self._sel.select(timeout=1.0)
            except (OSError, ValueError):
                continue
            for key, _ in events:
                if key.data is None:
                    try:
                        self._wake_r.recv(4096)
                    except OSError:
                        pass
                    continue
                try:
                    conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                except OSError:
                    continue
                self._serve(key.data, conn)

    def _serve(self, ip: str, conn: socket.socket) -> None:
        """Hand one connection to its own SSH transport thread."""
        conn.setblocking(True)
        transport = paramiko.Transport(conn)
        transport.set_log_channel(SSHD_LOG)  # a client that only probes the port is no error
        transport.add_server_key(self._host_key)
        try:
            transport.start_server(event=threading.Event(), server=_GuestSshd(self.logins))
        except (paramiko.SSHException, OSError, EOFError):
            transport.close()
            return
        with self._lock:
            live = [t for t in self._transports.get(ip, []) if t.is_active()]
            live.append(transport)
            self._transports[ip] = live
