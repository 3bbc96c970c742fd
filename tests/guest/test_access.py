"""Giving a booted guest its owner's keys over SSH (`SshAccess`), against the
simulator's guest SSH servers: what the guest holds afterwards, and each way
it can fail."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import paramiko
import pytest

from dynvm.config import GuestLogin
from dynvm.core.ports import KeyInstallFailed, LoginRefused
from dynvm.guest.access import SshAccess
from dynvm.sim.guestimage import CommandResult, GuestImage
from dynvm.sim.guestsshd import GuestPorts
from testbed.serving import free_port
from tests.support.guest_ssh import can_log_in

IP = "127.16.250.21"
LOGINS = {"root": "rootpw", "ci": "cipw"}


@pytest.fixture
def ports() -> Iterator[GuestPorts]:
    p = GuestPorts(free_port(), LOGINS)
    yield p
    p.stop()


def line(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()} owner@laptop"


def can_login(port: int, user: str, **auth: object) -> bool:
    return can_log_in(IP, port, user, **auth)


@pytest.mark.parametrize("user", ["root", "ci"])
def test_keys_hostname_and_locked_password(ports: GuestPorts, user: str) -> None:
    names: list[str] = []
    image = GuestImage(on_hostname=names.append)
    ports.open(IP, image)
    key, other = paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()
    SshAccess().install(IP, ports.port, GuestLogin(user, LOGINS[user]), [line(key)], "web-4",
                        lock_password=True, timeout=10)
    assert image.authorized(user) == [(key.get_name(), key.get_base64())]
    assert names == ["web-4"] and image.hostname == "web-4"
    assert can_login(ports.port, user, pkey=key)
    assert not can_login(ports.port, user, pkey=other)
    assert not can_login(ports.port, user, password=LOGINS[user])
    # Without lock_password, passwords keep working.
    plain = GuestImage()
    ports.close(IP)
    ports.open(IP, plain)
    SshAccess().install(IP, ports.port, GuestLogin(user, LOGINS[user]), [line(key)], "h",
                        lock_password=False, timeout=10)
    assert can_login(ports.port, user, password=LOGINS[user])
    assert can_login(ports.port, user, pkey=key)


class Refusing(GuestImage):
    """A guest image whose command `word` fails, as a full disk or a missing tool would."""

    def __init__(self, word: str) -> None:
        super().__init__()
        self.word = word

    def run(self, user: str, command: str, stdin: Callable[[], bytes]) -> CommandResult:
        if self.word in command:
            stdin()
            return CommandResult(1, stderr=b"No space left on device\n")
        return super().run(user, command, stdin)


@pytest.mark.parametrize(("word", "what"), [("authorized_keys", "adding the keys"),
                                            ("hostnamectl", "setting the hostname"),
                                            ("passwd", "locking the password")])
def test_a_failed_step_is_named(ports: GuestPorts, word: str, what: str) -> None:
    ports.open(IP, Refusing(word))
    key = paramiko.ECDSAKey.generate()
    with pytest.raises(KeyInstallFailed) as exc:
        SshAccess().install(IP, ports.port, GuestLogin("ci", "cipw"), [line(key)], "h",
                            lock_password=True, timeout=10)
    text = str(exc.value)
    assert text == f"{what} failed (exit status 1: No space left on device)"
    assert key.get_base64() not in text


def test_bad_credentials_and_no_guest(ports: GuestPorts) -> None:
    ports.open(IP, GuestImage())
    with pytest.raises(LoginRefused):
        SshAccess().install(IP, ports.port, GuestLogin("ci", "wrong"), [], "h", False, 10)
    ports.close(IP)
    with pytest.raises(OSError):
        SshAccess().install(IP, ports.port, GuestLogin("ci", "cipw"), [], "h", False, 2)
