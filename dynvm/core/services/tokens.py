"""Token administration (`dynvm token create|list|revoke`), over the store alone.

The CLI opens it through the bootstrap (`open_tokens`) without pools or
background loops: making a token needs nothing but the store.
"""

from __future__ import annotations

import time

from dynvm.core import tokens
from dynvm.core.records import Token
from dynvm.core.store import Store


class TokenAdmin:
    """Tokens made, listed and revoked; only a token's hash is ever kept."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @staticmethod
    def lifetime(text: str) -> float:
        """'90d', '12h', '30m', '2w' (a bare number is days) in seconds; ValueError if not."""
        return tokens.parse_duration(text)

    def create(self, owner: str, *, admin: bool = False,
               expires_in: float | None = None) -> tuple[str, Token]:
        """A new token for `owner` (None: it never expires): its secret, shown once, and
        its record. ValueError when `owner` is not a valid name."""
        return tokens.create(self._store, owner, admin=admin, expires_in=expires_in)

    def all(self) -> list[Token]:
        return self._store.tokens.all()

    def revoke(self, token_id: str) -> bool:
        """False if no token has that id."""
        return self._store.tokens.revoke(token_id, time.time())

    def close(self) -> None:
        self._store.close()
