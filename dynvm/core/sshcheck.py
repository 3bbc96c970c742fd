"""checkvms: log in to a new guest over SSH with the configured credentials, as the seed did.

paramiko is imported on first use: most workers never check a guest, and
its import would slow every worker's start.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("dynvm.sshcheck")


class LoginRefused(Exception):
    """The guest's sshd answered but refused the credentials: waiting will not help."""


class NotAnswering(OSError):
    """No SSH session could be opened (yet): no sshd, a dropped connection, a bad banner."""


def _accept_new_guest(paramiko: Any) -> Any:
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
    client.set_missing_host_key_policy(_accept_new_guest(paramiko))
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
