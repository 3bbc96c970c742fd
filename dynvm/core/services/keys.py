"""An owner's SSH public keys, registered once (`dynvm keys add|list|remove`,
`/api/v1/keys`) and put on every VM that owner gets: through v1 requests and
through legacy requests made with its token.

Keys are checked as a request's are (`dynvm.core.sshkeys`); only the owner
sees and changes its own (an admin token acts for its own owner name too).
"""

from __future__ import annotations

from dynvm.core.callers import Caller
from dynvm.core.errors import NotFound, Unprocessable
from dynvm.core.services.base import Subject
from dynvm.core.sshkeys import BadKey, key_id, parse_key
from dynvm.core.store import OwnerKey, TooManyKeys

MAX_KEYS = 20  # per owner


class Keys(Subject):
    def listing(self, caller: Caller) -> list[OwnerKey]:
        self.rt.touch()
        return self.rt.read(lambda: self.ctx.store.owner_keys.of_owner(caller.owner))

    def add(self, caller: Caller, line: str) -> tuple[OwnerKey, bool]:
        """Register one key line; (the key, whether it is new). Unprocessable for a bad
        key or one too many."""
        self.rt.touch()
        try:
            key = parse_key(line, "key")
        except BadKey as exc:
            raise Unprocessable(str(exc)) from None
        kept = OwnerKey(caller.owner, key.line, key.fingerprint, self.ctx.clock())
        try:
            added = self.rt.read(lambda: self.ctx.store.owner_keys.add(kept, MAX_KEYS))
        except TooManyKeys as exc:
            raise Unprocessable(f"{exc}: remove one first (dynvm keys remove)") from None
        if not added:
            kept = next(k for k in self.listing(caller) if k.fingerprint == key.fingerprint)
        return kept, added

    def remove(self, caller: Caller, ident: str) -> OwnerKey:
        """Forget the caller's key `ident` (its id or fingerprint); NotFound if it has none."""
        found = [k for k in self.listing(caller)
                 if ident in (k.fingerprint, key_id(k.fingerprint))]
        if not found:
            raise NotFound(f"no key {ident[:80]}")
        key = found[0]
        if not self.rt.read(lambda: self.ctx.store.owner_keys.remove(caller.owner,
                                                                     key.fingerprint)):
            raise NotFound(f"no key {ident[:80]}")  # removed meanwhile
        return key
