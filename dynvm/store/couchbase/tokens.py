"""API tokens in Couchbase, keyed by the secret's hash (the lookup of every request).

Keys: `token::<hash>` `{"dynvm": "token", "token": {...}}`; `tokens::index`
the hashes of all tokens.
"""

from __future__ import annotations

from typing import Any

from dynvm.core.store import Token, Tokens
from dynvm.store.couchbase.kv import KEEP, CouchbaseRepository


class CouchbaseTokens(CouchbaseRepository, Tokens):
    def put(self, token: Token) -> None:
        self._kv.index_add("tokens::index", token.hash)
        self._kv.io("upsert", self._kv.key(f"token::{token.hash}"),
                    {"dynvm": "token", "token": token.to_dict()})

    def by_hash(self, token_hash: str) -> Token | None:
        doc, _ = self._kv.get(f"token::{token_hash}")
        return Token.from_dict(doc["token"]) if doc else None

    def all(self) -> list[Token]:
        out = [Token.from_dict(d["token"]) for d in self._kv.load_all("tokens::index", "token::")]
        return sorted(out, key=lambda t: (t.created, t.id))

    def revoke(self, token_id: str, when: float) -> bool:
        found = [t for t in self.all() if t.id == token_id]
        for token in found:
            def fn(doc: dict[str, Any] | None) -> Any:
                if doc is None:
                    return KEEP
                t = Token.from_dict(doc["token"])
                if t.revoked is not None:
                    return KEEP
                t.revoked = when
                return {"dynvm": "token", "token": t.to_dict()}
            self._kv.mutate(f"token::{token.hash}", fn)
        return bool(found)

