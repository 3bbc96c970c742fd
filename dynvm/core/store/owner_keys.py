"""The owner-key repository: SSH public keys an owner registered once, put on
every VM that owner gets (through v1 and through legacy requests made with
the owner's token). Public keys, but still the owner's: never logged, never
in history."""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass
from typing import Any


class TooManyKeys(Exception):
    """The owner has as many keys as it may keep."""


@dataclass(frozen=True)
class OwnerKey:
    owner: str
    line: str  # `type base64 [comment]`, as validated
    fingerprint: str  # SHA256:..., how owners and operators name a key
    added: float  # epoch seconds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OwnerKey:
        return cls(owner=str(d["owner"]), line=str(d["line"]),
                   fingerprint=str(d["fingerprint"]), added=float(d["added"]))

    def __repr__(self) -> str:
        return f"OwnerKey({self.owner!r}, {self.fingerprint})"


class OwnerKeys(abc.ABC):
    """Keys by owner; one key (by fingerprint) at most once per owner."""

    @abc.abstractmethod
    def add(self, key: OwnerKey, limit: int) -> bool:
        """Keep `key`; False when its owner has it already.

        Atomic: of two processes adding keys at once, neither can take the
        owner past `limit` keys (TooManyKeys when it would).
        """

    @abc.abstractmethod
    def of_owner(self, owner: str) -> list[OwnerKey]:
        """The owner's keys, oldest first."""

    @abc.abstractmethod
    def remove(self, owner: str, fingerprint: str) -> bool:
        """Forget one of the owner's keys; False when it has no such key."""
