"""`dynvm sim --guest-ssh-port PORT [--guest-login USER:PASSWORD ...]`: SSH on the guests."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

DEFAULT_GUEST_LOGINS = {"root": "dynvm"}  # user -> password every simulated guest accepts
LOGIN_ENV = "DYNVM_SIM_GUEST_LOGIN"  # USER:PASSWORD, so no password sits on a command line


def _logins(ctx: click.Context, param: click.Parameter,
            values: tuple[str, ...]) -> dict[str, str] | None:
    given = list(values) or ([os.environ[LOGIN_ENV]] if os.environ.get(LOGIN_ENV) else [])
    if not given:
        return None
    out: dict[str, str] = {}
    for value in given:
        user, sep, password = value.partition(":")
        if not sep or not user:
            raise click.BadParameter("expected USER:PASSWORD", ctx=ctx, param=param)
        out[user] = password
    return out


def guest_ssh_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--guest-login", "guest_logins", multiple=True, callback=_logins, metavar="USER:PASSWORD",
        help=f"A login the guests' SSH servers accept (repeatable; default from ${LOGIN_ENV}, "
             f"else {next(iter(DEFAULT_GUEST_LOGINS))}:{next(iter(DEFAULT_GUEST_LOGINS.values()))})."
    )(fn)
    return click.option(
        "--guest-ssh-port", type=click.IntRange(1, 65535), default=None,
        help="Open an SSH server on every running guest's address at this port "
             "(for checkvms=true; set vm.ssh.port to it)."
    )(fn)


def announce(port: int | None, logins: dict[str, str] | None) -> str:
    """Comment lines for the printed INI: how dynvm's checkvms can log in."""
    if port is None:
        return ""
    users = ", ".join(sorted(logins or DEFAULT_GUEST_LOGINS))
    return (f"# guests accept SSH logins ({users}) on port {port}: in [common] set\n"
            f"#   vm.ssh.port={port}, vm.linux.username/password (and vm.windows.*)\n")
