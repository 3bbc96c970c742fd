"""Hot reload: re-read the INI file when it changes, keep the last good Config in force."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from dynvm.config.ini import ConfigError, parse_bytes
from dynvm.config.model import Config
from dynvm.private_files import write_private

log = logging.getLogger("dynvm.config")


# ------------------------------------------------------------------------ watcher


REMOVAL_CONFIRMATION_SUFFIX = ".accept-removal"


def removal_confirmation_path(config_path: str | os.PathLike[str]) -> Path:
    return Path(os.fspath(config_path) + REMOVAL_CONFIRMATION_SUFFIX)


def confirm_removal(config_path: str | os.PathLike[str]) -> str:
    """Record that the file as it is now may drop hosts; the confirmation names its hash,
    so it accepts exactly this content and nothing written later."""
    digest = hashlib.sha256(Path(config_path).read_bytes()).hexdigest()
    write_private(removal_confirmation_path(config_path), digest + "\n")
    return digest


def read_removal_confirmation(config_path: str | os.PathLike[str]) -> str | None:
    try:
        return removal_confirmation_path(config_path).read_text().strip() or None
    except OSError:
        return None


def removals(old: Config, new: Config) -> list[str]:
    """What `new` drops compared with `old`: hosts, and per-OS caps of hosts it keeps."""
    notes = [f"xenhost{ref} ({old.hosts[ref].url}) is no longer configured"
             for ref in sorted(set(old.hosts) - set(new.hosts))]
    for ref in sorted(set(old.hosts) & set(new.hosts)):
        before, after = old.hosts[ref].os, new.hosts[ref].os
        for os_key in sorted(set(before) - set(after)):
            notes.append(f"xenhost{ref} no longer serves {os_key}")
        caps_before, caps_after = old.hosts[ref].vms_max, new.hosts[ref].vms_max
        for os_key in sorted(set(caps_before) - set(caps_after)):
            notes.append(f"xenhost{ref} lost its cap host.vms.max.{os_key}="
                         f"{caps_before[os_key]}")
    return notes


class ConfigWatcher:
    """Keeps the configuration of one file current without a restart.

    `current()` is on every request's path, so it only looks at the file once
    per `check_interval` and otherwise returns the Config in hand. A change is
    detected by the content's hash (mtime alone misses two writes within the
    same clock tick). A broken new file is refused and logged once; the last
    good Config stays in force until a good file appears. The check interval and
    the settling period are measured on `clock` (monotonic seconds): the service
    hands in its own, so a test moves them instead of waiting for them.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        on_change: Callable[[Config], None] | None = None,
        check_interval: float = 1.0,
        settle_secs: float = 0.0,
        guard: Callable[[Config, Config], str | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = os.fspath(path)
        self.env = env
        self.on_change = on_change
        self.check_interval = check_interval
        # A changed file is read once its content has not changed for this long, so a
        # file being written (or copied) is never taken half way.
        self.settle_secs = settle_secs
        # guard(old, new) -> a reason to refuse `new` unless the operator confirmed it.
        self.guard = guard
        self._clock = clock
        self._pending: tuple[str, float] | None = None  # (digest, first seen)
        self._lock = threading.RLock()  # re-entrant: on_change may call current()
        self._read_error = ""
        data = self._read()
        if data is None:
            raise ConfigError([f"{self.path}: cannot read: {self._read_error}"], self.path)
        self._config = parse_bytes(data, self.path, env)
        self._log_warnings(self._config)
        self._seen_digest = self._good_digest = hashlib.sha256(data).hexdigest()
        self.last_error: str | None = None
        self.generation = 1
        self._next_check = clock() + check_interval

    def current(self) -> Config:
        """The Config in force, re-checking the file when `check_interval` has passed."""
        if self._clock() >= self._next_check:
            self._check(force=False)
        return self._config

    def reload(self) -> bool:
        """Check the file now; True when a new good Config was put in force."""
        return self._check(force=True)

    def _read(self) -> bytes | None:
        try:
            return Path(self.path).read_bytes()
        except OSError as e:
            self._read_error = e.strerror or str(e)
            return None

    def _check(self, force: bool) -> bool:
        if not self._lock.acquire(blocking=force):
            return False  # another thread is checking; keep serving the current one
        try:
            now = self._clock()
            if not force and now < self._next_check:
                return False
            self._next_check = now + self.check_interval
            data = self._read()
            if data is None:
                digest = "unreadable"
                if digest != self._seen_digest:
                    self._seen_digest = digest
                    self._refuse(f"configuration {self.path} refused: cannot read: {self._read_error}")
                return False
            digest = hashlib.sha256(data).hexdigest()
            confirmed = read_removal_confirmation(self.path) == digest
            seen = digest + (":confirmed" if confirmed else "")
            if seen == self._seen_digest:
                return False
            if digest == self._good_digest:  # back to the file in force: not a change
                self._seen_digest = seen
                self._pending = None
                if self.last_error is not None:
                    log.info("configuration %s is again the one in force", self.path)
                self.last_error = None
                return False
            if not force and self.settle_secs > 0:
                if self._pending is None or self._pending[0] != digest:
                    self._pending = (digest, now)  # changed: wait until it stops changing
                    return False
                if now - self._pending[1] < self.settle_secs:
                    return False
            self._pending = None
            self._seen_digest = seen
            try:
                config = parse_bytes(data, self.path, self.env)
            except ConfigError as e:
                self._refuse(str(e))
                return False
            reason = self.guard(self._config, config) if self.guard is not None else None
            if reason and not confirmed:
                self._refuse(
                    f"configuration {self.path} refused: {reason}; if that is intended, run "
                    f"`dynvm check-config --accept-removal {self.path}`")
                return False
            if reason:
                log.warning("configuration %s: %s (accepted by the operator)", self.path, reason)
            for note in removals(self._config, config):
                log.warning("configuration %s: %s", self.path, note)
            self._config = config
            self._good_digest = digest
            self.last_error = None
            self.generation += 1
            log.info("configuration %s reloaded (generation %d, %d hosts)",
                     self.path, self.generation, len(config.hosts))
            self._log_warnings(config)
            if self.on_change is not None:  # under the lock, so handlers see changes in order
                try:
                    self.on_change(config)
                except Exception:
                    log.exception("configuration change handler failed")
            return True
        finally:
            self._lock.release()

    def _refuse(self, message: str) -> None:
        self.last_error = message
        self._pending = None
        log.error("%s\nthe last good configuration (generation %d) stays in force",
                  message, self.generation)

    @staticmethod
    def _log_warnings(config: Config) -> None:
        for w in config.warnings:
            log.warning("%s", w)
