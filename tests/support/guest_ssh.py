"""Logging in to a simulated guest the way its owner would, with paramiko."""

from __future__ import annotations

from typing import Any

import paramiko


def can_log_in(ip: str, port: int, user: str, **auth: Any) -> bool:
    """Whether `user` gets in with `auth` (`pkey=` or `password=`); no agent, no ~/.ssh."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(ip, port, user, timeout=10, allow_agent=False, look_for_keys=False,
                       **auth)
    except paramiko.AuthenticationException:
        return False
    finally:
        client.close()
    return True
