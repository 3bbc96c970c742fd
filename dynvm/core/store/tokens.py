"""The token repository: API tokens, of which only the secret's hash is ever stored."""

from __future__ import annotations

import abc

from dynvm.core.records import Token


class Tokens(abc.ABC):
    """Tokens by id (for operators) and by hash (for every authenticated request)."""

    @abc.abstractmethod
    def put(self, token: Token) -> None: ...

    @abc.abstractmethod
    def by_hash(self, token_hash: str) -> Token | None: ...

    @abc.abstractmethod
    def all(self) -> list[Token]:
        """Every token, oldest first."""

    @abc.abstractmethod
    def revoke(self, token_id: str, when: float) -> bool:
        """Mark a token revoked (the first time counts); False if no token has that id."""
