"""An in-process stand-in for a Couchbase collection, for tests.

This is a stand-in, not a mock: it implements the subset of the Couchbase
Python SDK 4.x `Collection` API that `CouchbaseStore` uses (get, insert,
upsert, replace, remove), honouring CAS and document expiry the way the server
does, and raising the SDK's own exception classes. It exists so the adapter's
compare-and-swap logic runs in every test run without a cluster; the same
contract suite also runs against a real Couchbase when one is configured.

`latency` (seconds) delays every call outside the lock, like a network round
trip, so concurrent callers really interleave between a read and the CAS
write that follows it.

`offline = True` makes every call fail the way an unreachable cluster does
(`UnAmbiguousTimeoutException`), so outage handling can be tested.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from datetime import timedelta
from typing import Any

from couchbase.exceptions import (
    CasMismatchException,
    DocumentExistsException,
    DocumentNotFoundException,
    UnAmbiguousTimeoutException,
)


class _ContentAs:
    def __init__(self, value: Any) -> None:
        self._value = value

    def __getitem__(self, kind: type) -> Any:
        return kind(copy.deepcopy(self._value))


class StandInGetResult:
    """What `Collection.get` returns: `.content_as[dict]`, `.cas`."""

    def __init__(self, value: Any, cas: int) -> None:
        self.cas = cas
        self.content_as = _ContentAs(value)

    @property
    def value(self) -> Any:
        return copy.deepcopy(self.content_as._value)


class StandInMutationResult:
    def __init__(self, cas: int) -> None:
        self.cas = cas


def _expiry_of(options: Any, kwargs: dict[str, Any]) -> timedelta | None:
    expiry = kwargs.get("expiry")
    if expiry is None and options is not None:
        expiry = dict(options).get("expiry")
    if expiry is None:
        return None
    if not isinstance(expiry, timedelta):
        raise TypeError("expiry must be a timedelta")
    return expiry


def _cas_of(options: Any, kwargs: dict[str, Any]) -> int | None:
    cas = kwargs.get("cas")
    if cas is None and options is not None:
        cas = dict(options).get("cas")
    return cas or None


class StandInCollection:
    """Thread-safe dict honouring CAS and expiry, with the SDK collection's call shapes."""

    def __init__(self, clock: Any = time.time, latency: float = 0.0) -> None:
        self._docs: dict[str, tuple[Any, int, float | None]] = {}
        self._lock = threading.Lock()
        self._cas = itertools.count(1)
        self._clock = clock
        self.latency = latency
        self.offline = False
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.offline:
            raise UnAmbiguousTimeoutException(message="stand-in collection is offline")

    def _round_trip(self) -> None:
        if self.latency:
            time.sleep(self.latency)

    def _live(self, key: str) -> tuple[Any, int, float | None] | None:
        entry = self._docs.get(key)
        if entry is not None and entry[2] is not None and entry[2] <= self._clock():
            del self._docs[key]
            return None
        return entry

    def _store(self, key: str, value: Any, expiry: timedelta | None) -> int:
        cas = next(self._cas)
        deadline = None if not expiry else self._clock() + expiry.total_seconds()
        self._docs[key] = (copy.deepcopy(value), cas, deadline)
        return cas

    def get(self, key: str, *options: Any, **kwargs: Any) -> StandInGetResult:
        self._round_trip()
        with self._lock:
            self._check()
            entry = self._live(key)
            if entry is None:
                raise DocumentNotFoundException(message=f"document not found: {key}")
            return StandInGetResult(entry[0], entry[1])

    def insert(self, key: str, value: Any, *options: Any, **kwargs: Any) -> StandInMutationResult:
        self._round_trip()
        with self._lock:
            self._check()
            if self._live(key) is not None:
                raise DocumentExistsException(message=f"document exists: {key}")
            opt = options[0] if options else None
            return StandInMutationResult(self._store(key, value, _expiry_of(opt, kwargs)))

    def upsert(self, key: str, value: Any, *options: Any, **kwargs: Any) -> StandInMutationResult:
        self._round_trip()
        with self._lock:
            self._check()
            opt = options[0] if options else None
            return StandInMutationResult(self._store(key, value, _expiry_of(opt, kwargs)))

    def replace(self, key: str, value: Any, *options: Any, **kwargs: Any) -> StandInMutationResult:
        self._round_trip()
        with self._lock:
            self._check()
            opt = options[0] if options else None
            self._existing(key, opt, kwargs)
            # Like the server: a replace without an expiry clears the old one.
            return StandInMutationResult(self._store(key, value, _expiry_of(opt, kwargs)))

    def remove(self, key: str, *options: Any, **kwargs: Any) -> StandInMutationResult:
        self._round_trip()
        with self._lock:
            self._check()
            self._existing(key, options[0] if options else None, kwargs)
            del self._docs[key]
            return StandInMutationResult(next(self._cas))

    def _existing(self, key: str, opt: Any, kwargs: dict[str, Any]) -> None:
        """Raise as the server does if `key` is missing or its CAS does not match."""
        entry = self._live(key)
        if entry is None:
            raise DocumentNotFoundException(message=f"document not found: {key}")
        cas = _cas_of(opt, kwargs)
        if cas is not None and cas != entry[1]:
            raise CasMismatchException(message=f"CAS mismatch on {key}")

    # Test helpers (not part of the SDK API).
    def keys(self) -> list[str]:
        with self._lock:
            return sorted(k for k in list(self._docs) if self._live(k) is not None)

    def raw(self, key: str) -> Any:
        with self._lock:
            entry = self._live(key)
            return None if entry is None else copy.deepcopy(entry[0])
