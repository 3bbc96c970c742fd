"""One rule for the INI file of every command that reads the service's configuration.

`--config FILE` anywhere on the command line (`dynvm --config F hosts drain 1` and
`dynvm hosts drain 1 --config F` alike; the last one given wins), else $DYNVM_CONFIG,
else the file `dynvm serve` wrote for its embedded simulated farm. Every problem with
it is one line on stderr and exit code 2, the code of every configuration problem.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from dynvm.core.services import Dynvm

META_KEY = "dynvm_config"
EXIT_CONFIG = 2


class ConfigProblem(click.ClickException):
    """No configuration, or one that cannot be used: exit code 2."""

    exit_code = EXIT_CONFIG

    def show(self, file: Any = None) -> None:
        click.echo(f"dynvm: {self.format_message()}", err=True)


def _remember(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta[META_KEY] = value  # `meta` is shared by the whole command line


config_option = click.option(
    "--config", type=click.Path(dir_okay=False), expose_value=False, callback=_remember,
    help="The service's INI file (else $DYNVM_CONFIG, else the embedded farm's).")


def given(ctx: click.Context) -> str | None:
    """The file named by --config anywhere on the command line, if any."""
    return ctx.meta.get(META_KEY)


def config_path(ctx: click.Context) -> str:
    """The INI file this command uses, by the rule above; ConfigProblem if there is none."""
    from dynvm.runtime.bootstrap import config_file

    try:
        path = config_file(given(ctx), embedded=True)
    except RuntimeError:
        raise ConfigProblem("no configuration: pass --config FILE or set DYNVM_CONFIG "
                            "(or start `dynvm serve` without one for the embedded farm)"
                            ) from None
    if not os.path.isfile(path):
        raise ConfigProblem(f"no configuration file {path}")
    return path


@contextmanager
def service(ctx: click.Context) -> Iterator[Dynvm]:
    """The core over the same store and pools the service uses, without its background
    loops; a configuration or store problem is one line, never a traceback."""
    from dynvm.config import ConfigError
    from dynvm.core.errors import DynvmError, StoreError
    from dynvm.runtime.bootstrap import build_service

    try:
        svc = build_service(config_path(ctx), background=False)
    except ConfigError as exc:
        raise ConfigProblem(str(exc)) from None
    except (DynvmError, StoreError) as exc:
        raise click.ClickException(_message(exc)) from None
    try:
        yield svc
    finally:
        svc.close()


def _message(exc: Any) -> str:
    return str(getattr(exc, "message", None) or exc).removeprefix("Error: ")


def fail(message: str, code: int = 1) -> None:
    """A command of the local configuration ends: the message on stderr, exit `code`."""
    click.echo(message, err=True)
    sys.exit(code)
