"""API tokens: created once, shown once, stored only as a hash.

The secret is 32 random bytes (URL-safe text) behind a `dvm_` prefix, so a
leaked one is easy to recognise; the store keeps its SHA-256, which is
enough for a secret with this much entropy (no salt or slow hash needed:
nobody can guess it from the hash by trying words).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time

from dynvm.core.store import Store, Token

PREFIX = "dvm_"
OWNER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_DURATION = re.compile(r"(\d+)\s*([smhdw]?)")
_UNIT_SECS = {"": 86400, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def parse_duration(text: str) -> float:
    """'90d', '12h', '30m', '2w' (a bare number is days) -> seconds."""
    m = _DURATION.fullmatch(text.strip().lower())
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90d, 12h, 30m, 2w)")
    return int(m.group(1)) * _UNIT_SECS[m.group(2)]


def create(store: Store, owner: str, *, admin: bool = False,
           expires_in: float | None = None, now: float | None = None) -> tuple[str, Token]:
    """A new token for `owner`; returns (the secret, to show once, and its record)."""
    if not OWNER_RE.fullmatch(owner):
        raise ValueError(f"bad owner {owner!r}: letters, digits, '.', '_' and '-', "
                         "starting with a letter or digit, at most 64")
    now = time.time() if now is None else now
    secret = PREFIX + secrets.token_urlsafe(32)
    token = Token(id=secrets.token_hex(4), owner=owner, hash=hash_secret(secret), admin=admin,
                  created=now, expires=None if expires_in is None else now + expires_in)
    store.tokens.put(token)
    return secret, token


def authenticate(store: Store, secret: str, now: float | None = None) -> Token | None:
    """The valid token whose secret this is, else None."""
    if not secret or len(secret) > 256:
        return None
    token = store.tokens.by_hash(hash_secret(secret))
    if token is None or not token.valid(now):
        return None
    return token


def known_owners(store: Store) -> set[str]:
    """Every owner a token was ever made for: their VMs are protected on legacy routes."""
    return {t.owner for t in store.tokens.all()}
