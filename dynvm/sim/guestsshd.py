"""SSH servers of the simulated guests, one listener per guest address.

A guest accepts the farm's guest logins by password (unless its image turned
passwords off or locked the user) and the public keys in the user's
`~/.ssh/authorized_keys` on its image; a client may then run commands (the
image's small shell, `GuestImage.run`), nothing else.
"""

from __future__ import annotations

import hmac
import logging
import selectors
import socket
import threading
from collections.abc import Mapping
from contextlib import suppress

import paramiko
from paramiko.common import (
    AUTH_FAILED,
    AUTH_SUCCESSFUL,
    OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED,
    OPEN_SUCCEEDED,
)

from .guestimage import GuestImage
from .ssh_options import DEFAULT_GUEST_LOGINS

SSHD_LOG = "dynvm.sim.guestsshd"
logging.getLogger(SSHD_LOG).setLevel(logging.CRITICAL)
STDIN_LIMIT = 1 << 20  # what a command may read from its client


def _read_all(channel: paramiko.Channel) -> bytes:
    data = b""
    while len(data) < STDIN_LIMIT:
        chunk = channel.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


class _GuestSshd(paramiko.ServerInterface):
    """Password and public-key logins for the farm's guest users; commands run on the image."""

    def __init__(self, logins: Mapping[str, str], image: GuestImage) -> None:
        self.logins = logins
        self.image = image
        self.user = ""

    def get_allowed_auths(self, username: str) -> str:
        return "publickey,password" if self.image.password_allowed(username) else "publickey"

    def check_auth_password(self, username: str, password: str) -> int:
        ok = username in self.logins and hmac.compare_digest(
            self.logins[username].encode(), password.encode())
        if ok and self.image.password_allowed(username):
            self.user = username
            return AUTH_SUCCESSFUL
        return AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        offered = (key.get_name(), key.get_base64())
        if username in self.logins and offered in self.image.authorized(username):
            self.user = username
            return AUTH_SUCCESSFUL
        return AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:  # noqa: V107 - paramiko's
        return OPEN_SUCCEEDED if kind == "session" else OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        text = command.decode(errors="replace")
        threading.Thread(target=self._exec, args=(channel, text), name="sim guest command",
                         daemon=True).start()
        return True

    def _exec(self, channel: paramiko.Channel, command: str) -> None:
        """Run, answer output, exit status and EOF; close once the client's input ends.

        The command may finish before paramiko has told the client its request
        was accepted: closing then would reach the client first and fail its
        request. The client's own EOF (or close) comes after that answer.
        """
        try:
            result = self.image.run(self.user, command, lambda: _read_all(channel))
            if result.stdout:
                channel.sendall(result.stdout)
            if result.stderr:
                channel.sendall_stderr(result.stderr)
            channel.send_exit_status(result.status)
            channel.shutdown_write()
            while channel.recv(65536):
                pass
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            with suppress(OSError, EOFError, paramiko.SSHException):
                channel.close()  # a client that went first: nothing left to tell it


class GuestPorts:
    """SSH servers on (guest IP, port) accepting the farm's guest logins (`logins`).

    Each connection is served by a paramiko transport in server mode. One
    host key (ECDSA, quick to make) serves every guest. A guest opened
    without an image has a blank one of its own (password logins only).
    """

    def __init__(self, port: int, logins: Mapping[str, str] | None = None) -> None:
        self.port = port
        self.logins = dict(DEFAULT_GUEST_LOGINS if logins is None else logins)
        self._host_key = paramiko.ECDSAKey.generate()
        self._transports: dict[str, list[paramiko.Transport]] = {}
        self._images: dict[str, GuestImage] = {}
        self._sel = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._socks: dict[str, socket.socket] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="sim guest ports", daemon=True)
        self._thread.start()

    def open(self, ip: str, image: GuestImage | None = None) -> None:
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
            self._images[ip] = image if image is not None else GuestImage()
            self._sel.register(s, selectors.EVENT_READ, ip)
        self._wake_w.send(b"x")

    def close(self, ip: str) -> None:
        with self._lock:
            s = self._socks.pop(ip, None)
            sessions = self._transports.pop(ip, [])
            self._images.pop(ip, None)
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
        with self._lock:
            image = self._images.get(ip)
        if image is None:  # closed meanwhile
            conn.close()
            return
        conn.setblocking(True)
        transport = paramiko.Transport(conn)
        transport.set_log_channel(SSHD_LOG)  # a client that only probes the port is no error
        transport.add_server_key(self._host_key)
        try:
            transport.start_server(event=threading.Event(),
                                   server=_GuestSshd(self.logins, image))
        except (paramiko.SSHException, OSError, EOFError):
            transport.close()
            return
        with self._lock:
            live = [t for t in self._transports.get(ip, []) if t.is_active()]
            live.append(transport)
            self._transports[ip] = live
