"""The SQLite connection keeper every SQLite repository (and the outbox) writes through.

WAL mode lets readers run beside one writer; every read-modify-write runs in
`BEGIN IMMEDIATE` (`SqliteDb.tx`), which takes the database write lock up
front, so two processes can never interleave inside `reserve`, `transition`
or a TTL lock, and a transaction may read and write the tables of several
subjects at once. Connections are opened lazily per thread and per process:
gunicorn forks workers after the app is built, and an SQLite connection must
never cross a fork.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, ClassVar

from dynvm.core.store import StoreUnavailable
from dynvm.private_files import private_file, tighten

log = logging.getLogger(__name__)

BUSY_TIMEOUT_SECS = 10.0
# The WAL index begins with two copies of its 48-byte header; byte 12 is `isInit`.
WAL_HEADER_BYTES = 48
WAL_IS_INIT = 12
# How often a process checks that the file it writes is still the one at its path.
IDENTITY_CHECK_SECS = 1.0


# OperationalError messages that mean "cannot use the database now", as
# opposed to a bug in a statement.
_UNAVAILABLE_HINTS = ("locked", "busy", "unable to open", "disk i/o", "readonly", "read-only",
                      "disk is full", "no such table")


def connect_sqlite(path: str, *, schema: str | None = None) -> sqlite3.Connection:
    """Open `path` in autocommit mode with WAL and a busy timeout (shared with the outbox).

    The file is created 0600 before SQLite sees it: SQLite gives its -wal and -shm
    files the main file's mode. Those left open to others by an older dynvm are
    made private too.
    """
    private_file(path)
    for leftover in ("-wal", "-shm"):
        tighten(path + leftover)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECS, isolation_level=None,
                           check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECS * 1000)}")
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed release or expiry must survive a power cut too.
    conn.execute("PRAGMA synchronous=FULL")
    if schema:
        conn.executescript(schema)
    return conn


def is_unavailable(exc: BaseException) -> bool:
    """True for "the database cannot be used now" (locked, full, read-only, gone, damaged),
    False for a mistake in a statement, which must surface as the bug it is."""
    if isinstance(exc, OSError):
        return True
    if isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError,
                        sqlite3.InterfaceError)):
        return False
    if isinstance(exc, sqlite3.OperationalError):
        return any(h in str(exc).lower() for h in _UNAVAILABLE_HINTS)
    return isinstance(exc, sqlite3.DatabaseError)  # "file is not a database", malformed...


def _rollback(conn: sqlite3.Connection) -> None:
    """Undo an open transaction; SQLite may already have (after a full disk, say)."""
    if conn.in_transaction:
        with suppress(sqlite3.Error):  # the error that brought us here is the one to report
            conn.execute("ROLLBACK")


class _ThreadConn:
    """One thread's connection, held only by that thread's locals.

    When the thread ends its locals go, and with them the connection: threads
    come and go (a pool per provisioning request), their connections must not
    pile up until the process runs out of file handles.
    """

    __slots__ = ("conn", "pid", "identity", "serial", "__weakref__")
    _serials = itertools.count(1)

    def __init__(self, conn: sqlite3.Connection, pid: int,
                 identity: tuple[int, int] | None) -> None:
        self.conn = conn
        self.pid = pid
        self.identity = identity
        self.serial = next(self._serials)  # never reused, unlike id()

    def __del__(self) -> None:
        with suppress(sqlite3.Error):
            self.conn.close()


class _ShmFile:
    """A read-only descriptor of a `-shm` file, closed once: by `close()` or when the
    keeper that opened it is gone (a store nobody closed does not leak it)."""

    __slots__ = ("fd", "pid")

    def __init__(self, path: str) -> None:
        self.fd: int | None = None  # until opened: `__del__` runs after a failed open too
        self.pid = os.getpid()
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None and self.pid == os.getpid():  # a fork's copy is the parent's to close
            with suppress(OSError):
                os.close(fd)

    def __del__(self) -> None:
        self.close()


class SqliteDb:
    """Per-thread, per-process connections to one SQLite file."""

    def __init__(self, path: str, schema: str) -> None:
        self.path = path
        self._schema = schema
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: weakref.WeakSet[_ThreadConn] = weakref.WeakSet()  # for close()
        self._schema_pid: int | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file in use
        self._checked = 0.0
        self._shm: tuple[tuple[int, int] | None, _ShmFile] | None = None  # (identity, file)
        self._retired: list[_ShmFile] = []
        # The last write refused for want of room or by an I/O error, until a write
        # succeeds again: a tiny probe may still fit in the WAL of a full disk.
        self.write_fault: str | None = None

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    def _check_identity(self) -> None:
        """Notice, within IDENTITY_CHECK_SECS, that the file was deleted or replaced.

        SQLite keeps writing to the unlinked file otherwise, or refuses every
        write as read-only: everything would be lost or the service stuck until
        a restart. Every thread then reopens the file at the path, recreated
        (empty) if it is gone.
        """
        now = time.monotonic()
        if now - self._checked < IDENTITY_CHECK_SECS:
            return
        self._checked = now
        current = self._file_identity()
        if self._identity is not None and current != self._identity:
            with self._lock:
                if self._identity is not None and self._file_identity() != self._identity:
                    log.error("SQLite store %s %s; reopening it%s", self.path,
                              "was deleted" if current is None else "was replaced",
                              " (recreated empty)" if current is None else "")
                    self._identity = None
                    self._schema_pid = None  # the new file needs the schema

    def _open(self) -> tuple[sqlite3.Connection, tuple[int, int] | None]:
        """Connect, recreating a deleted file (under a lock file, once across processes)."""
        private_file(self.path + ".lock")
        with open(self.path + ".lock", "rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not os.path.exists(self.path):
                    for leftover in ("-wal", "-shm"):  # of the deleted file, not of the new one
                        with suppress(FileNotFoundError):
                            os.unlink(self.path + leftover)
                first = self._schema_pid != os.getpid()
                conn = connect_sqlite(self.path, schema=self._schema if first else None)
                return conn, self._file_identity()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def conn(self) -> sqlite3.Connection:
        pid = os.getpid()
        self._check_identity()
        held = getattr(self._local, "held", None)
        if held is not None and held.pid == pid and held.identity == self._identity:
            return held.conn
        # New thread, first use after a fork, or a new file: never reuse an old handle.
        try:
            with self._lock:
                conn, identity = self._open()
                held = _ThreadConn(conn, pid, identity)
                self._schema_pid = pid
                self._identity = identity
                self._all.add(held)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: {one_line(exc)}") from exc
        old = getattr(self._local, "held", None)
        self._local.held = held
        if old is not None and old.pid == pid:
            with suppress(sqlite3.Error):
                old.conn.close()
        return held.conn

    @contextmanager
    def tx(self, *, probe: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the database lock from its first statement.

        `probe`: the health check's tiny write, which proves nothing about room
        for real data, so it neither sets nor clears `write_fault`.
        """
        conn = self.conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store {self.path}: {one_line(exc)}") from exc
        try:
            yield conn
        except BaseException as exc:
            _rollback(conn)
            # A full disk or an I/O error mid-transaction is an outage like any
            # other: the outbox queues on StoreUnavailable, not on sqlite3 errors.
            if isinstance(exc, (sqlite3.Error, OSError)) and is_unavailable(exc):
                self._note_fault(exc, probe)
                raise StoreUnavailable(f"SQLite store {self.path}: {one_line(exc)}") from exc
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(conn)
            self._note_fault(exc, probe)
            raise StoreUnavailable(f"SQLite store {self.path}: {one_line(exc)}") from exc
        if not probe:
            self.write_fault = None

    def _note_fault(self, exc: BaseException, probe: bool) -> None:
        text = str(exc).lower()
        if not probe and (isinstance(exc, OSError) or "full" in text or "i/o" in text):
            self.write_fault = one_line(exc)

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.conn().execute(sql, args).fetchall()
        except (sqlite3.Error, OSError) as exc:
            if is_unavailable(exc):
                raise StoreUnavailable(f"SQLite store {self.path}: {one_line(exc)}") from exc
            raise

    def generation(self) -> tuple[int, int, int] | bytes:
        """A token that changes whenever anyone commits a change to the file, read
        without reading a table. Comparable only with the tokens of the same thread.

        Usually the WAL index header (`wal_header`): one read of 96 bytes. Else
        (this thread's connection, SQLite's `data_version`, which moves with every
        commit of any other connection, and the connection's own `total_changes`):
        a query, which takes and drops the WAL's read locks.
        """
        try:
            conn = self.conn()
            header = self.wal_header()
            if header is not None:
                return header
            (version,) = conn.execute("PRAGMA data_version").fetchone()
            return self._local.held.serial, int(version), conn.total_changes
        except (sqlite3.Error, OSError) as exc:
            if is_unavailable(exc):
                raise StoreUnavailable(f"SQLite store {self.path}: {one_line(exc)}") from exc
            raise

    def wal_header(self) -> bytes | None:
        """The header of the file's WAL index (the `-shm` file, sqlite.org/walformat.html),
        which every commit of any connection rewrites (its change counter, last frame,
        checksums and salts); None when it cannot be trusted (no WAL index, not
        initialised, or caught half-written: its two copies differ).

        Read with `pread`, not mapped: a file cut short under a mapping would kill the
        process, a short read only falls back to the query. Call after `conn()`, which
        keeps `_identity` current: a file replaced at the path has a new WAL index.
        """
        pid, identity = os.getpid(), self._identity
        shm = self._shm
        if shm is None or shm[1].pid != pid or shm[0] != identity:
            with self._lock:
                shm = self._shm
                if shm is None or shm[1].pid != pid or shm[0] != identity:
                    if shm is not None and shm[1].pid == pid:
                        # Closed with the store: another thread may be reading it now.
                        self._retired.append(shm[1])
                    try:
                        shm = (identity, _ShmFile(self.path + "-shm"))
                    except OSError:
                        self._shm = None
                        return None
                    self._shm = shm
        fd = shm[1].fd
        if fd is None:  # closed by `close()` meanwhile
            return None
        try:
            raw = os.pread(fd, 2 * WAL_HEADER_BYTES, 0)
        except OSError:
            return None
        first = raw[:WAL_HEADER_BYTES]
        if len(raw) < 2 * WAL_HEADER_BYTES or first != raw[WAL_HEADER_BYTES:] \
                or first[WAL_IS_INIT] != 1:
            return None
        return first

    def close(self) -> None:
        pid = os.getpid()
        with self._lock:
            for held in list(self._all):
                if held.pid == pid:
                    held.conn.close()
            self._schema_pid = None
            if self._shm is not None and self._shm[1].pid == pid:
                self._retired.append(self._shm[1])
            self._shm = None
            for shm_file in self._retired:
                shm_file.close()
            self._retired = []
        self._local = threading.local()


def take_ttl_lock(c: sqlite3.Connection, table: str, name: str, holder: str,
                  ttl: float) -> bool:
    """Take or renew the TTL lock `name` in `table` (name, holder, expires) inside `c`'s
    transaction; False while another holder's lock has not lapsed."""
    now = time.time()
    row = c.execute(f"SELECT holder, expires FROM {table} WHERE name=?", (name,)).fetchone()
    if row is not None and row[0] != holder and row[1] > now:
        return False
    c.execute(f"INSERT OR REPLACE INTO {table}(name, holder, expires) VALUES (?,?,?)",
              (name, holder, now + ttl))
    return True


def drop_ttl_lock(c: sqlite3.Connection, table: str, name: str, holder: str) -> None:
    c.execute(f"DELETE FROM {table} WHERE name=? AND holder=?", (name, holder))


def one_line(exc: BaseException) -> str:
    """The error on one line, with SQLite's own code name ("disk I/O error" alone does not
    say whether a read fell short or a lock failed)."""
    text = " ".join(str(exc).split())[:200]
    name = getattr(exc, "sqlite_errorname", None)
    return f"{text} ({name})" if name and name not in ("SQLITE_ERROR", "SQLITE_OK") else text


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True)


class SqliteRepository:
    """One subject's repository over the state file's shared connection keeper.

    `SCHEMA` creates its tables; the backend applies every repository's schema
    to the file at once, so a recreated file gets all of them.
    """

    SCHEMA: ClassVar[str] = ""

    def __init__(self, db: SqliteDb) -> None:
        self._db = db


# Tables that belong to no one subject: small key/value pairs (the history mark, the
# deployment identity).
SHARED_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
