"""checkvms: log in to a new guest over SSH with the configured credentials, as the seed did."""

from __future__ import annotations

import logging

import paramiko

log = logging.getLogger("dynvm.sshcheck")

logging.getLogger("paramiko").setLevel(logging.WARNING)  # one line per connection otherwise


class LoginRefused(Exception):
    """The guest's sshd answered but refused the credentials: waiting will not help."""


class NotAnswering(OSError):
    """No SSH session could be opened (yet): no sshd, a dropped connection, a bad banner."""


class _AcceptNewGuest(paramiko.MissingHostKeyPolicy):
    """A VM cloned a moment ago has no known host key yet; nothing is saved."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        return None


def ssh_login(ip: str, port: int, username: str, password: str, timeout: float) -> None:
    """Open an SSH session as `username` and close it.

    Raises LoginRefused on bad credentials, an OSError (NotAnswering among
    them) when the guest's sshd is not (yet) there.
    """
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(_AcceptNewGuest())
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
