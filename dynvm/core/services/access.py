"""Who is calling: the [auth] settings in force and the caller behind a token's secret."""

from __future__ import annotations

from dynvm.config import AuthConfig
from dynvm.core import tokens
from dynvm.core.callers import Caller
from dynvm.core.services.base import Subject


class Access(Subject):
    """What the HTTP layer asks before a route runs (`dynvm.api.access` decides with it)."""

    def settings(self) -> AuthConfig:
        """[auth] as configured now: which routes need a token, failed-attempt limits."""
        return self.rt.config().auth

    def caller_for(self, secret: str) -> Caller | None:
        """The caller behind a token's secret; None if unknown, expired or revoked.

        Raises StoreUnavailable when the tokens cannot be read.
        """
        token = tokens.authenticate(self.ctx.store, secret)
        return None if token is None else Caller(owner=token.owner, admin=token.admin)
