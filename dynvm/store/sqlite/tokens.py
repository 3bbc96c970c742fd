"""API tokens in SQLite: the `tokens` table, found by id or by the secret's hash."""

from __future__ import annotations

import json

from dynvm.core.store import Token, Tokens
from dynvm.store.sqlite.db import SqliteRepository, dumps


class SqliteTokens(SqliteRepository, Tokens):
    SCHEMA = """
    CREATE TABLE IF NOT EXISTS tokens (
        id TEXT PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        data TEXT NOT NULL
    );
    """

    def put(self, token: Token) -> None:
        with self._db.tx() as c:
            c.execute("INSERT OR REPLACE INTO tokens(id, hash, data) VALUES (?,?,?)",
                      (token.id, token.hash, dumps(token.to_dict())))

    def by_hash(self, token_hash: str) -> Token | None:
        rows = self._db.query("SELECT data FROM tokens WHERE hash=?", (token_hash,))
        return Token.from_dict(json.loads(rows[0][0])) if rows else None

    def all(self) -> list[Token]:
        rows = self._db.query("SELECT data FROM tokens")
        return sorted((Token.from_dict(json.loads(r[0])) for r in rows),
                      key=lambda t: (t.created, t.id))

    def revoke(self, token_id: str, when: float) -> bool:
        with self._db.tx() as c:
            row = c.execute("SELECT data FROM tokens WHERE id=?", (token_id,)).fetchone()
            if row is None:
                return False
            token = Token.from_dict(json.loads(row[0]))
            if token.revoked is None:
                token.revoked = when
            c.execute("UPDATE tokens SET data=? WHERE id=?", (dumps(token.to_dict()), token_id))
            return True
