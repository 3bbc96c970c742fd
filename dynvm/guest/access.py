"""A warm VM given its owner's keys and hostname over SSH, as cloud-init gives
a new one: the core's `GuestAccess`, with paramiko.

Each step is one command of a POSIX shell, run as the template's login user
(through `sudo -n` for what needs root when that user is not root):

    umask 077 && mkdir -p .ssh && cat >> .ssh/authorized_keys   (the keys on stdin)
    hostnamectl set-hostname NAME
    passwd -l USER                                               (vm.password.login=false)

The keys travel on the command's input, never on a command line, and no
message names one.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dynvm.config import GuestLogin
from dynvm.core.ports import KeyInstallFailed, LoginRefused
from dynvm.guest.ssh import NotAnswering, accept_new_guest

if TYPE_CHECKING:
    import paramiko

ADD_KEYS = "umask 077 && mkdir -p .ssh && cat >> .ssh/authorized_keys"


class SshAccess:
    """The core's `GuestAccess` over paramiko."""

    def install(self, ip: str, port: int, login: GuestLogin, keys: Sequence[str],
                hostname: str, lock_password: bool, timeout: float) -> None:
        import paramiko

        logging.getLogger("paramiko").setLevel(logging.WARNING)
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(accept_new_guest(paramiko))
        try:
            client.connect(ip, port=port, username=login.username, password=login.password,
                           timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                           look_for_keys=False, allow_agent=False)
        except paramiko.AuthenticationException as exc:
            client.close()
            raise LoginRefused(f"SSH login as {login.username} to {ip}:{port} refused: "
                               f"{exc}") from None
        except (paramiko.SSHException, EOFError) as exc:
            client.close()
            raise NotAnswering(f"no SSH session with {ip}:{port}: {exc}") from None
        root = "" if login.username == "root" else "sudo -n "
        steps = [("adding the keys", ADD_KEYS, "".join(f"{k}\n" for k in keys).encode()),
                 ("setting the hostname", f"{root}hostnamectl set-hostname {shlex.quote(hostname)}",
                  b"")]
        if lock_password:
            steps.append(("locking the password",
                          f"{root}passwd -l {shlex.quote(login.username)}", b""))
        try:
            for what, command, data in steps:
                _run(client, what, command, data, timeout)
        except (paramiko.SSHException, EOFError) as exc:
            raise NotAnswering(f"SSH session with {ip}:{port} broke: {exc}") from None
        finally:
            client.close()


def _run(client: paramiko.SSHClient, what: str, command: str, data: bytes,
         timeout: float) -> None:
    """Run one step; KeyInstallFailed with its exit status and error output if it fails."""
    stdin, stdout, stderr = client.exec_command(command, timeout=timeout)
    stdin.write(data)
    stdin.flush()
    stdin.channel.shutdown_write()
    status = stdout.channel.recv_exit_status()
    err = stderr.read(500).decode(errors="replace").strip()
    stdout.channel.close()
    if status != 0:
        raise KeyInstallFailed(f"{what} failed (exit status {status}{': ' + err if err else ''})")
