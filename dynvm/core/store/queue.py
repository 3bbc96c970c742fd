"""The queue repository: requests that fit their owner's quota but wait for room."""

from __future__ import annotations

import abc

from dynvm.core.records import QueueEntry


class Queue(abc.ABC):
    """Queued requests by id, so any worker or instance can answer about them and the
    background leader of any instance can dispatch them, once each.

    The entry only says that a request waits and what ordering it needs; the
    request's record (`store.requests`) says `queued` while it does. A
    dispatcher `claim`s an entry before taking room for it: the claim is the
    atomic step that keeps two leaders from dispatching one request (the
    request's own move `queued -> running` is the second), and it lapses, so a
    dispatcher that died leaves the entry to the next one.
    """

    @abc.abstractmethod
    def add(self, entry: QueueEntry) -> None:
        """Store `entry` (again: replaces it)."""

    @abc.abstractmethod
    def get(self, request_id: str) -> QueueEntry | None: ...

    @abc.abstractmethod
    def entries(self) -> list[QueueEntry]:
        """Every entry, claimed or not, in arrival order (`enqueued`, then id)."""

    @abc.abstractmethod
    def claim(self, request_id: str, holder: str, ttl: float, now: float) -> QueueEntry | None:
        """Atomically hold the entry for `holder` until `now + ttl`.

        Returns it as held, or None if it is gone or another holder's claim has
        not lapsed. A holder may renew its own claim. Two processes claiming at
        once can never both get it.
        """

    @abc.abstractmethod
    def unclaim(self, request_id: str, holder: str) -> None:
        """Give back `holder`'s claim (no room after all): the entry waits again."""

    @abc.abstractmethod
    def remove(self, request_id: str) -> bool:
        """Take the entry out of the queue (dispatched, cancelled, expired); False if gone."""
