"""The lock repository: TTL locks for leader election, name locks, heartbeats, cancel marks."""

from __future__ import annotations

import abc


class Locks(abc.ABC):
    """Named locks that lapse on their own, so a holder that dies never blocks the others."""

    @abc.abstractmethod
    def acquire(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew the TTL lock `name` for `holder` for `ttl` seconds.

        True if `holder` holds it afterwards. A lock whose TTL has run out may
        be taken by anyone.
        """

    @abc.abstractmethod
    def release(self, name: str, holder: str) -> None:
        """Give the lock up; no effect unless `holder` holds it."""

    @abc.abstractmethod
    def holder(self, name: str) -> str | None:
        """Current holder of the lock, or None if free or lapsed."""
