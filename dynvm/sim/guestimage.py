"""What a simulated guest's disk holds that its SSH server and guest agent
read: files (each user's `~/.ssh/authorized_keys`), users whose password is
locked, whether sshd takes passwords at all, the hostname, and the cloud-init
instance it last configured itself for.

The image outlives boots (it is the VM's disk), so a reboot keeps installed
keys and a config drive is applied once per instance id, as cloud-init does.
Commands sent over SSH run in a small shell of their own (`run`): `&&` lists
of the commands a provisioning tool sends to a cloud image (`umask`, `mkdir`,
`cat`, `chmod`, `hostnamectl set-hostname`, `hostname`, `passwd -l`,
`sudo -n`), with their usual meaning on this image's files.
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

AUTHORIZED_KEYS = ".ssh/authorized_keys"


def home_of(user: str) -> str:
    return "/root" if user == "root" else f"/home/{user}"


def key_lines(text: str) -> list[tuple[str, str]]:
    """(type, base64 blob) of each key line of an authorized_keys text (options are not modelled)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not parts[0].startswith("#"):
            out.append((parts[0], parts[1]))
    return out


@dataclass
class CommandResult:
    status: int
    stdout: bytes = b""
    stderr: bytes = b""


@dataclass
class GuestImage:
    """One guest's disk as its sshd and guest agent see it; safe to share between threads."""

    files: dict[str, bytes] = field(default_factory=dict)  # absolute path -> content
    locked: set[str] = field(default_factory=set)  # users whose password is locked
    password_auth: bool = True  # sshd's PasswordAuthentication
    hostname: str | None = None  # None: the template's own, never reported
    instance_id: str | None = None  # the cloud-init instance this image was configured for
    on_hostname: Callable[[str], None] | None = None  # the guest agent reports it
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- what sshd asks -----------------------------------------------------

    def authorized(self, user: str) -> list[tuple[str, str]]:
        with self.lock:
            text = self.files.get(f"{home_of(user)}/{AUTHORIZED_KEYS}", b"")
        return key_lines(text.decode(errors="replace"))

    def password_allowed(self, user: str) -> bool:
        with self.lock:
            return self.password_auth and user not in self.locked

    # -- what cloud-init and commands change ----------------------------------

    def add_keys(self, user: str, keys: Iterable[str]) -> None:
        path = f"{home_of(user)}/{AUTHORIZED_KEYS}"
        with self.lock:
            text = self.files.get(path, b"").decode(errors="replace")
            have = set(key_lines(text))
            for key in keys:
                found = key_lines(key)
                if found and found[0] not in have:
                    have.add(found[0])
                    text += key.strip() + "\n"
            self.files[path] = text.encode()

    def set_hostname(self, name: str) -> None:
        with self.lock:
            self.hostname = name
            report = self.on_hostname
        if report is not None:
            report(name)

    def run(self, user: str, command: str, stdin: Callable[[], bytes]) -> CommandResult:
        """Run `command` as `user`; `stdin()` reads the client's input to its end."""
        out = b""
        for part in command.split("&&"):
            try:
                argv = shlex.split(part)
            except ValueError as exc:
                return CommandResult(2, out, f"sh: {exc}\n".encode())
            if not argv:
                return CommandResult(2, out, b"sh: syntax error\n")
            result = self._simple(user, argv, stdin)
            out += result.stdout
            if result.status != 0:
                return CommandResult(result.status, out, result.stderr)
        return CommandResult(0, out)

    def _path(self, user: str, path: str) -> str:
        if path.startswith("~/"):
            path = path[2:]
        return path if path.startswith("/") else f"{home_of(user)}/{path}"

    def _simple(self, user: str, argv: list[str], stdin: Callable[[], bytes]) -> CommandResult:
        name, args = argv[0], argv[1:]
        if name == "sudo" and args[:1] == ["-n"]:
            return self._simple("root", args[1:], stdin) if args[1:] else CommandResult(1)
        if name in ("umask", "mkdir", "chmod"):
            return CommandResult(0)
        if name == "cat":
            return self._cat(user, args, stdin)
        if name in ("hostnamectl", "hostname", "passwd") and user != "root":
            return CommandResult(1, stderr=f"{name}: permission denied\n".encode())
        if name == "hostnamectl" and args[:1] == ["set-hostname"] and len(args) == 2:
            self.set_hostname(args[1])
            return CommandResult(0)
        if name == "hostname" and len(args) == 1:
            self.set_hostname(args[0])
            return CommandResult(0)
        if name == "passwd" and args[:1] == ["-l"] and len(args) == 2:
            with self.lock:
                self.locked.add(args[1])
            return CommandResult(0)
        return CommandResult(127, stderr=f"sh: {name}: command not found\n".encode())

    def _cat(self, user: str, args: list[str], stdin: Callable[[], bytes]) -> CommandResult:
        if len(args) == 2 and args[0] in (">", ">>"):
            path, data = self._path(user, args[1]), stdin()
            with self.lock:
                self.files[path] = (self.files.get(path, b"") if args[0] == ">>" else b"") + data
            return CommandResult(0)
        out = b""
        for arg in args:
            with self.lock:
                content = self.files.get(self._path(user, arg))
            if content is None:
                return CommandResult(1, out, f"cat: {arg}: No such file or directory\n".encode())
            out += content
        return CommandResult(0, out)
