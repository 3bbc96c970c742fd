"""checkvms over SSH: log in to a new guest with the configured credentials, as the seed did.

paramiko is imported on first use: most workers never check a guest, and
its import would slow every worker's start.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from dynvm.config import GuestLogin
from dynvm.core.ports import LoginRefused

__all__ = ["LoginRefused", "NotAnswering", "SshProbe", "ssh_login"]

log = logging.getLogger("dynvm.guest")


class NotAnswering(OSError):
    """No SSH session could be opened (yet): no sshd, a dropped connection, a bad banner."""


def accept_new_guest(paramiko: Any) -> Any:
    """A VM cloned a moment ago has no known host key yet; nothing is saved."""

    class AcceptNewGuest(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            return None

    return AcceptNewGuest()


def ssh_login(ip: str, port: int, username: str, password: str, timeout: float) -> None:
    """Open an SSH session as `username` and close it.

    Raises LoginRefused on bad credentials, an OSError (NotAnswering among
    them) when the guest's sshd is not (yet) there.
    """
    import paramiko

    logging.getLogger("paramiko").setLevel(logging.WARNING)  # a line per connection otherwise
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(accept_new_guest(paramiko))
    try:
        client.connect(ip, port=port, username=username, password=password, timeout=timeout,
                       banner_timeout=timeout, auth_timeout=timeout, look_for_keys=False,
                       allow_agent=False)
    except paramiko.AuthenticationException as exc:
        raise LoginRefused(f"SSH login as {username} to {ip}:{port} refused: {exc}") from None
    except (paramiko.SSHException, EOFError) as exc:
        raise NotAnswering(f"no SSH session with {ip}:{port}: {exc}") from None
    finally:
        client.close()


class SshProbe:
    """The core's `GuestProbe`: an SSH login with credentials, else a TCP connect."""

    def attempt(self, ip: str, port: int, login: GuestLogin | None, timeout: float) -> None:
        if login is not None:
            ssh_login(ip, port, login.username, login.password, timeout)
            return
        with socket.create_connection((ip, port), timeout=min(3.0, timeout)):
            return
