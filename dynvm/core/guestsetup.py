"""What an owner asked its VMs to be given (SSH keys, a hostname, its own
cloud-config), and how each VM gets it.

- A template that runs cloud-init (`<os>.cloudinit=true`): every cold build
  gets a NoCloud config drive before its first start (its hostname, and the
  keys and cloud-config when asked).
- A warm VM has booted already: with the template's SSH credentials
  (`vm.linux.username/password`), the hand-out installs the keys and the
  hostname over SSH before answering. A request with a cloud-config, or for
  a Windows OS (a rename needs a reboot), or without credentials, is built
  cold instead. A key install that fails destroys that VM (it is never
  handed out without the keys) and the VM is built cold.
- A Linux template without cloud-init but with credentials gets them over
  SSH once built; anything else cannot take them, and a request that asks
  is refused.

The setup travels in memory from the request to the builder: never logged,
never in history; leases note the keys' fingerprints only.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dynvm.config import Config, OsSpec
from dynvm.core import cloudinit
from dynvm.core.clock import Clock
from dynvm.core.ports import FirstBoot, GuestAccess, KeyInstallFailed, LoginRefused
from dynvm.core.sshkeys import PublicKey
from dynvm.core.store import OwnerKey, Store

log = logging.getLogger("dynvm.guestsetup")

DRIVE = "config drive"
SSH = "ssh"
WARM_INSTALL_SECS = 10.0  # a warm guest's sshd is long up
COLD_INSTALL_SECS = 120.0  # a new guest's sshd may still be starting


class SetupFailed(Exception):
    """The VM could not be given its owner's setup (the message says why, never a key)."""


@dataclass(frozen=True)
class GuestSetup:
    keys: tuple[str, ...] = ()  # validated `authorized_keys` lines
    fingerprints: tuple[str, ...] = ()
    hostname: str | None = None  # None: each VM's own name
    user_data: Mapping[str, Any] | None = None  # the owner's cloud-config, parsed

    @classmethod
    def of(cls, keys: Sequence[PublicKey | OwnerKey], hostname: str | None = None,
           user_data: Mapping[str, Any] | None = None) -> GuestSetup:
        """Keys given once each (the first of a fingerprint wins)."""
        seen: dict[str, str] = {}
        for k in keys:
            seen.setdefault(k.fingerprint, k.line)
        return cls(tuple(seen.values()), tuple(seen), hostname, user_data)

    def __bool__(self) -> bool:
        return bool(self.keys) or self.hostname is not None or self.user_data is not None

    def __repr__(self) -> str:
        return (f"GuestSetup({len(self.keys)} key(s), hostname={self.hostname!r}, "
                f"user_data={'yes' if self.user_data is not None else 'no'})")

    def hostname_of(self, name: str, index: int | None = None) -> str:
        """The hostname VM `name` gets: the one asked (numbered in its first label when a
        request makes several VMs: index 1, 2, ...), else the VM's name."""
        if self.hostname is None:
            return cloudinit.hostname_for(name)
        if index is None:
            return self.hostname
        first, dot, rest = self.hostname.partition(".")
        return f"{first}{index}{dot}{rest}"


def for_owner(store: Store, cfg: Config, owner: str, os_key: str) -> GuestSetup | None:
    """The keys `owner` registered, for a request that asked for nothing itself (a legacy
    one made with its token); None when it has none, or when VMs of `os_key` cannot take
    them (legacy callers never asked: they get their VMs as before, and a log line)."""
    keys = store.owner_keys.of_owner(owner) if owner else []
    if not keys:
        return None
    setup = GuestSetup.of(keys)
    why = refusal(cfg, os_key, setup)
    if why is not None:
        log.info("%s's registered keys are not put on its %s VMs: %s", owner, os_key, why)
        return None
    return setup


def way(cfg: Config, spec: OsSpec, setup: GuestSetup) -> str | None:
    """How a VM built cold from `spec` gets `setup`: DRIVE, SSH, or None (it cannot)."""
    if spec.cloudinit:
        return DRIVE
    if setup.user_data is None and not spec.is_windows and cfg.guest_login(spec.key):
        return SSH
    return None


def refusal(cfg: Config, os_key: str, setup: GuestSetup) -> str | None:
    """Why VMs of `os_key` cannot be given `setup` on some host serving it; None if all can."""
    if not setup:
        return None
    for ref in sorted(cfg.hosts):
        spec = cfg.hosts[ref].os.get(os_key)
        if spec is None or way(cfg, spec, setup) is not None:
            continue
        if setup.user_data is not None:
            return (f"user_data needs a template that runs cloud-init, and xenhost{ref}'s "
                    f"{os_key} template does not ({os_key}.cloudinit)")
        return (f"xenhost{ref}'s {os_key} template runs no cloud-init ({os_key}.cloudinit) "
                f"and no SSH credentials are configured for it (vm.linux.username): it "
                f"cannot be given keys or a hostname")
    return None


def warm_ok(cfg: Config, os_key: str, setup: GuestSetup | None) -> bool:
    """Whether a warm VM of `os_key` may be handed out with `setup` (given over SSH)."""
    if not setup:
        return True
    spec = cfg.os_spec(os_key)
    return (setup.user_data is None and spec is not None and not spec.is_windows
            and cfg.guest_login(os_key) is not None)


def first_boot(cfg: Config, spec: OsSpec, setup: GuestSetup | None,
               hostname: str) -> FirstBoot | None:
    """The config drive of a cold build from a cloud-init template (every such VM gets one:
    its hostname at least), with `setup` in it; None for other templates."""
    setup = setup or GuestSetup()
    if way(cfg, spec, setup) != DRIVE:
        return None
    login = cfg.guest_login(spec.key)
    return cloudinit.first_boot(setup.keys, hostname,
                                dict(setup.user_data or {}),
                                login_user=login.username if login else None,
                                password_login=cfg.password_login)


def install(access: GuestAccess | None, cfg: Config, os_key: str, setup: GuestSetup,
            hostname: str, ip: str, *, timeout: float, clock: Clock,
            cancel: threading.Event | None = None) -> None:
    """Give a booted guest `setup` over SSH, waiting up to `timeout` for its sshd.

    Raises SetupFailed: bad credentials, a failed step or no sshd in time.
    """
    login = cfg.guest_login(os_key)
    if access is None or login is None:
        raise SetupFailed("no SSH access to the guest is configured")
    deadline = clock.monotonic() + timeout
    delay = 0.2
    while True:
        left = deadline - clock.monotonic()
        try:
            access.install(ip, cfg.ssh_port, login, setup.keys, hostname,
                           not cfg.password_login and bool(setup.keys),
                           max(min(left, 10.0), 1.0))
            return
        except (LoginRefused, KeyInstallFailed) as exc:
            raise SetupFailed(f"giving the guest its keys over SSH: {exc}") from None
        except OSError as exc:  # its sshd is not up yet
            if left <= 0 or (cancel is not None and cancel.is_set()):
                raise SetupFailed(f"giving the guest its keys over SSH: no SSH session with "
                                  f"{ip}:{cfg.ssh_port} ({exc})") from None
        clock.sleep(min(delay, max(left, 0.0)))  # waiting for the guest's sshd
        delay = min(delay * 2, 2.0)
