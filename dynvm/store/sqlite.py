"""SQLite backend: the embedded default, shared by every process on one machine.

Longer than 400 lines on purpose: it is the whole Store port over one file and one
transaction discipline, a section per subject, and the fork-safe connection keeper
that discipline rests on.

WAL mode lets readers run beside one writer; every read-modify-write runs in
`BEGIN IMMEDIATE`, which takes the database write lock up front, so two
processes can never interleave inside `reserve`, `transition` or a TTL
lock. Connections are opened lazily per thread and per process: gunicorn
forks workers after the app is built, and an SQLite connection must never
cross a fork.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from dynvm.core import lifecycle
from dynvm.core.store import (
    LEASE_ACTIVE,
    DocEdit,
    FreeSlots,
    Lease,
    QuotaCheck,
    RequestRecord,
    Reservation,
    Store,
    StoreUnavailable,
    Token,
    owner_usage,
    plan_reservations,
)
from dynvm.private_files import private_file, tighten

log = logging.getLogger(__name__)

BUSY_TIMEOUT_SECS = 10.0
# How often a process checks that the file it writes is still the one at its path.
IDENTITY_CHECK_SECS = 1.0
# Finished request records are kept this long, then pruned.
REQUEST_KEEP_SECS = 7 * 24 * 3600.0
REQUEST_PRUNE_EVERY_SECS = 3600.0

# The whole state file, static-pool documents (`pools=`) included: every process that
# opens the file, and every reopening of a deleted one, applies all of it.
SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    uuid TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    created_time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS history_created ON history(created_time);
CREATE TABLE IF NOT EXISTS leases (
    vm_uuid TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    os TEXT NOT NULL,
    expires REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_name ON leases(name);
CREATE INDEX IF NOT EXISTS leases_state ON leases(state);
CREATE INDEX IF NOT EXISTS leases_expires ON leases(expires);
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT PRIMARY KEY,
    host_key TEXT NOT NULL,
    request_id TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reservations_host ON reservations(host_key);
CREATE INDEX IF NOT EXISTS reservations_request ON reservations(request_id);
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_state ON requests(state);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS docs (
    key TEXT PRIMARY KEY,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS locks (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS static_pool (
    ip TEXT PRIMARY KEY,
    vm_uuid TEXT NOT NULL,
    doc TEXT NOT NULL
);
"""

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

    __slots__ = ("conn", "pid", "identity", "__weakref__")

    def __init__(self, conn: sqlite3.Connection, pid: int,
                 identity: tuple[int, int] | None) -> None:
        self.conn = conn
        self.pid = pid
        self.identity = identity

    def __del__(self) -> None:
        with suppress(sqlite3.Error):
            self.conn.close()


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
                    log.error("SQLite store %s was %s; reopening it%s", self.path,
                              "deleted" if current is None else "replaced",
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
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}") from exc
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
            raise StoreUnavailable(f"SQLite store {self.path}: {_one_line(exc)}") from exc
        try:
            yield conn
        except BaseException as exc:
            _rollback(conn)
            # A full disk or an I/O error mid-transaction is an outage like any
            # other: the outbox queues on StoreUnavailable, not on sqlite3 errors.
            if isinstance(exc, (sqlite3.Error, OSError)) and is_unavailable(exc):
                self._note_fault(exc, probe)
                raise StoreUnavailable(f"SQLite store {self.path}: {_one_line(exc)}") from exc
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(conn)
            self._note_fault(exc, probe)
            raise StoreUnavailable(f"SQLite store {self.path}: {_one_line(exc)}") from exc
        if not probe:
            self.write_fault = None

    def _note_fault(self, exc: BaseException, probe: bool) -> None:
        text = str(exc).lower()
        if not probe and (isinstance(exc, OSError) or "full" in text or "i/o" in text):
            self.write_fault = _one_line(exc)

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.conn().execute(sql, args).fetchall()
        except (sqlite3.Error, OSError) as exc:
            if is_unavailable(exc):
                raise StoreUnavailable(f"SQLite store {self.path}: {_one_line(exc)}") from exc
            raise

    def close(self) -> None:
        pid = os.getpid()
        with self._lock:
            for held in list(self._all):
                if held.pid == pid:
                    held.conn.close()
            self._schema_pid = None
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


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True)


class SqliteStore(Store):
    """The Store contract on one SQLite file (default `.dynvm/dynvm.sqlite`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db = SqliteDb(path, SCHEMA)
        self._next_prune = 0.0  # finish_request prunes old requests at most hourly

    # -- history --------------------------------------------------------------
    def put_history(self, vm_uuid: str, doc: dict[str, Any]) -> None:
        created = float(doc.get("created_time") or time.time())
        with self._db.tx() as c:
            c.execute("INSERT OR REPLACE INTO history(uuid, doc, created_time) VALUES (?,?,?)",
                      (vm_uuid, _dumps(doc), created))
            self._new_history_mark(c)

    def update_history(self, vm_uuid: str, patch: dict[str, Any]) -> None:
        with self._db.tx() as c:
            row = c.execute("SELECT doc, created_time FROM history WHERE uuid=?",
                            (vm_uuid,)).fetchone()
            doc = json.loads(row[0]) if row else {}
            doc.update(patch)
            created = float(doc.get("created_time") or (row[1] if row else time.time()))
            c.execute("INSERT OR REPLACE INTO history(uuid, doc, created_time) VALUES (?,?,?)",
                      (vm_uuid, _dumps(doc), created))
            self._new_history_mark(c)

    def get_history(self, vm_uuid: str) -> dict[str, Any] | None:
        rows = self._db.query("SELECT doc FROM history WHERE uuid=?", (vm_uuid,))
        return json.loads(rows[0][0]) if rows else None

    def history(self, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self._db.query(
            "SELECT doc FROM history ORDER BY created_time DESC, uuid LIMIT ?", (int(limit),))
        return [json.loads(r[0]) for r in rows]

    @staticmethod
    def _new_history_mark(c: sqlite3.Connection) -> None:
        # A fresh random token, not a counter: a database reset cannot bring an old one back.
        c.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('history_mark', ?)",
                  (uuid.uuid4().hex,))

    def history_mark(self) -> str:
        rows = self._db.query("SELECT value FROM meta WHERE key='history_mark'")
        return str(rows[0][0]) if rows else ""

    # -- leases ---------------------------------------------------------------
    @staticmethod
    def _write_lease(c: sqlite3.Connection, lease: Lease) -> None:
        c.execute("INSERT OR REPLACE INTO leases(vm_uuid, name, state, os, expires, data) "
                  "VALUES (?,?,?,?,?,?)",
                  (lease.vm_uuid, lease.name, lease.state, lease.os, float(lease.expires),
                   _dumps(lease.to_dict())))

    def put_lease(self, lease: Lease) -> None:
        lifecycle.check_birth(lease.state)
        with self._db.tx() as c:
            self._write_lease(c, lease)

    def get_lease(self, vm_uuid: str) -> Lease | None:
        rows = self._db.query("SELECT data FROM leases WHERE vm_uuid=?", (vm_uuid,))
        return Lease.from_dict(json.loads(rows[0][0])) if rows else None

    def _swap_lease(self, vm_uuid: str, expect_state: str | None,
                      changes: dict[str, Any]) -> Lease | None:
        if "vm_uuid" in changes and changes["vm_uuid"] != vm_uuid:
            raise ValueError("a lease's vm_uuid cannot change")
        with self._db.tx() as c:
            row = c.execute("SELECT data FROM leases WHERE vm_uuid=?", (vm_uuid,)).fetchone()
            if row is None:
                return None
            lease = Lease.from_dict(json.loads(row[0]))
            if expect_state is not None and lease.state != expect_state:
                return None
            lease = lease.with_(**changes)
            self._write_lease(c, lease)
            return lease

    def delete_lease(self, vm_uuid: str) -> None:
        with self._db.tx() as c:
            c.execute("DELETE FROM leases WHERE vm_uuid=?", (vm_uuid,))

    def leases(self, *, name: str | None = None, state: str | None = None,
               os: str | None = None) -> list[Lease]:
        where, args = [], []
        for col, val in (("name", name), ("state", state), ("os", os)):
            if val is not None:
                where.append(f"{col}=?")
                args.append(val)
        sql = "SELECT data FROM leases"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY expires, vm_uuid"
        return [Lease.from_dict(json.loads(r[0])) for r in self._db.query(sql, tuple(args))]

    def due_leases(self, now: float) -> list[Lease]:
        rows = self._db.query(
            "SELECT data FROM leases WHERE state=? AND expires<=? ORDER BY expires, vm_uuid",
            (LEASE_ACTIVE, float(now)))
        return [Lease.from_dict(json.loads(r[0])) for r in rows]

    # -- reservations -----------------------------------------------------------
    def reserve(self, host_key: str, wanted: list[Reservation],
                free_slots: FreeSlots, quota: QuotaCheck | None = None) -> list[Reservation]:
        return self.reserve_many([(host_key, wanted, free_slots)], quota)[0]

    def reserve_many(self, batches: list[tuple[str, list[Reservation], FreeSlots]],
                     quota: QuotaCheck | None = None) -> list[list[Reservation]]:
        now = time.time()
        out = []
        with self._db.tx() as c:
            # The write lock is held: the owner's usage cannot change until commit.
            room_left = self._quota_room(c, quota, now) if quota is not None else None
            for host_key, wanted, free_slots in batches:
                already, taken = self._reserve_in(c, host_key, wanted, free_slots, room_left,
                                                  now)
                if room_left is not None:
                    room_left -= len(taken)
                out.append(already + taken)
        return out

    @staticmethod
    def _reserve_in(c: sqlite3.Connection, host_key: str, wanted: list[Reservation],
                    free_slots: FreeSlots, room_left: int | None,
                    now: float) -> tuple[list[Reservation], list[Reservation]]:
        """(what the caller already held, what it takes now) on one host."""
        rows = c.execute("SELECT data FROM reservations WHERE host_key=?", (host_key,)).fetchall()
        items = [Reservation.from_dict(json.loads(data)) for (data,) in rows]
        live, already, taken = plan_reservations(items, wanted, free_slots, room_left, now)
        kept = {r.id for r in live}
        for r in items:
            if r.id not in kept:
                c.execute("DELETE FROM reservations WHERE id=?", (r.id,))
        for r in taken:
            c.execute("INSERT OR REPLACE INTO reservations(id, host_key, request_id, data) "
                      "VALUES (?,?,?,?)", (r.id, host_key, r.request_id, _dumps(r.to_dict())))
        return already, taken

    @staticmethod
    def _quota_room(c: sqlite3.Connection, quota: QuotaCheck, now: float) -> int:
        res = [Reservation.from_dict(json.loads(r[0]))
               for r in c.execute("SELECT data FROM reservations").fetchall()]
        leases = [Lease.from_dict(json.loads(r[0])) for r in c.execute(
            "SELECT data FROM leases WHERE json_extract(data, '$.owner')=?",
            (quota.owner,)).fetchall()]
        mine, owned = owner_usage(quota.owner, [r for r in res if r.live(now)], leases)
        return max(0, int(quota.room(mine, owned)))

    def settle_reservation(self, res_id: str, *, vm_uuid: str | None = None,
                           settle_secs: float = 0.0) -> None:
        with self._db.tx() as c:
            row = c.execute("SELECT data FROM reservations WHERE id=?", (res_id,)).fetchone()
            if row is None:
                return
            if settle_secs <= 0:
                c.execute("DELETE FROM reservations WHERE id=?", (res_id,))
                return
            r = Reservation.from_dict(json.loads(row[0]))
            r.settle_until = time.time() + settle_secs
            if vm_uuid is not None:
                r.vm_uuid = vm_uuid
            c.execute("UPDATE reservations SET data=? WHERE id=?", (_dumps(r.to_dict()), res_id))

    def drop_reservations(self, request_id: str) -> int:
        with self._db.tx() as c:
            cur = c.execute("DELETE FROM reservations WHERE request_id=?", (request_id,))
            return cur.rowcount

    def reservations(self, host_key: str | None = None) -> list[Reservation]:
        if host_key is None:
            rows = self._db.query("SELECT data FROM reservations ORDER BY host_key, id")
        else:
            rows = self._db.query("SELECT data FROM reservations WHERE host_key=? ORDER BY id",
                                  (host_key,))
        now = time.time()
        res = [Reservation.from_dict(json.loads(r[0])) for r in rows]
        return [r for r in res if r.live(now)]

    # -- requests ---------------------------------------------------------------
    def put_request(self, req: RequestRecord) -> None:
        with self._db.tx() as c:
            c.execute("INSERT OR REPLACE INTO requests(id, state, data) VALUES (?,?,?)",
                      (req.id, req.state, _dumps(req.to_dict())))

    def finish_request(self, request_id: str, state: str,
                       detail: dict[str, Any] | None = None) -> None:
        now = time.time()
        with self._db.tx() as c:
            row = c.execute("SELECT data FROM requests WHERE id=?", (request_id,)).fetchone()
            if row is not None:
                req = RequestRecord.from_dict(json.loads(row[0]))
                lifecycle.check_request_move(req.state, state)
                req.state = state
                req.finished = now
                if detail:
                    req.detail.update(detail)
                c.execute("UPDATE requests SET state=?, data=? WHERE id=?",
                          (state, _dumps(req.to_dict()), request_id))
            # Prune what nobody will ask about any more. Every finished record is
            # read to do it, under the write lock, so not on every call.
            if now >= self._next_prune:
                self._next_prune = now + REQUEST_PRUNE_EVERY_SECS
                for rid, data in c.execute("SELECT id, data FROM requests WHERE state!='running'"
                                           ).fetchall():
                    finished = json.loads(data).get("finished")
                    if finished is not None and finished < now - REQUEST_KEEP_SECS:
                        c.execute("DELETE FROM requests WHERE id=?", (rid,))

    def get_request(self, request_id: str) -> RequestRecord | None:
        rows = self._db.query("SELECT data FROM requests WHERE id=?", (request_id,))
        return RequestRecord.from_dict(json.loads(rows[0][0])) if rows else None

    def note_request_vm(self, request_id: str, name: str, entry: dict[str, Any]) -> None:
        with self._db.tx() as c:
            row = c.execute("SELECT data FROM requests WHERE id=?", (request_id,)).fetchone()
            if row is None:
                return
            req = RequestRecord.from_dict(json.loads(row[0]))
            req.detail.setdefault("vms", {}).setdefault(name, {}).update(entry)
            c.execute("UPDATE requests SET data=? WHERE id=?", (_dumps(req.to_dict()), request_id))

    def requests(self, state: str | None = None) -> list[RequestRecord]:
        if state is None:
            rows = self._db.query("SELECT data FROM requests")
        else:
            rows = self._db.query("SELECT data FROM requests WHERE state=?", (state,))
        out = [RequestRecord.from_dict(json.loads(r[0])) for r in rows]
        return sorted(out, key=lambda r: (r.started, r.id))

    # -- API tokens ----------------------------------------------------------------
    def put_token(self, token: Token) -> None:
        with self._db.tx() as c:
            c.execute("INSERT OR REPLACE INTO tokens(id, hash, data) VALUES (?,?,?)",
                      (token.id, token.hash, _dumps(token.to_dict())))

    def token_by_hash(self, token_hash: str) -> Token | None:
        rows = self._db.query("SELECT data FROM tokens WHERE hash=?", (token_hash,))
        return Token.from_dict(json.loads(rows[0][0])) if rows else None

    def tokens(self) -> list[Token]:
        rows = self._db.query("SELECT data FROM tokens")
        return sorted((Token.from_dict(json.loads(r[0])) for r in rows),
                      key=lambda t: (t.created, t.id))

    def revoke_token(self, token_id: str, when: float) -> bool:
        with self._db.tx() as c:
            row = c.execute("SELECT data FROM tokens WHERE id=?", (token_id,)).fetchone()
            if row is None:
                return False
            token = Token.from_dict(json.loads(row[0]))
            if token.revoked is None:
                token.revoked = when
            c.execute("UPDATE tokens SET data=? WHERE id=?", (_dumps(token.to_dict()), token_id))
            return True

    # -- TTL locks ---------------------------------------------------------------
    def acquire_lock(self, name: str, holder: str, ttl: float) -> bool:
        with self._db.tx() as c:
            return take_ttl_lock(c, "locks", name, holder, ttl)

    def release_lock(self, name: str, holder: str) -> None:
        with self._db.tx() as c:
            drop_ttl_lock(c, "locks", name, holder)

    def lock_holder(self, name: str) -> str | None:
        rows = self._db.query("SELECT holder, expires FROM locks WHERE name=?", (name,))
        if rows and rows[0][1] > time.time():
            return rows[0][0]
        return None

    # -- deployment identity --------------------------------------------------------
    def deployment_id(self, new: str | None) -> str | None:
        if new is None:
            rows = self._db.query("SELECT value FROM meta WHERE key='deployment'")
            return str(rows[0][0]) if rows else None
        with self._db.tx() as c:
            c.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('deployment', ?)", (new,))
            return str(c.execute("SELECT value FROM meta WHERE key='deployment'").fetchone()[0])

    # -- operator documents ----------------------------------------------------------
    def get_doc(self, key: str) -> dict[str, Any] | None:
        rows = self._db.query("SELECT doc FROM docs WHERE key=?", (key,))
        return json.loads(rows[0][0]) if rows else None

    def update_doc(self, key: str, edit: DocEdit) -> dict[str, Any] | None:
        with self._db.tx() as c:
            row = c.execute("SELECT doc FROM docs WHERE key=?", (key,)).fetchone()
            new = edit(json.loads(row[0]) if row else None)
            if new is None:
                c.execute("DELETE FROM docs WHERE key=?", (key,))
            else:
                c.execute("INSERT OR REPLACE INTO docs(key, doc) VALUES (?,?)", (key, _dumps(new)))
            return new

    # -- lifecycle --------------------------------------------------------------------
    def ping(self) -> None:
        # Reads the schema, so a damaged or replaced file fails here; `SELECT 1`
        # answers without touching the file at all.
        self._db.query("SELECT count(*) FROM sqlite_master")

    def ping_write(self) -> None:
        # A real write through the WAL: a read-only or deleted file and a held write
        # lock fail here (the last after the busy timeout). A full disk may still
        # take this tiny write in the WAL's free frames, so the last refused real
        # write counts too, until a real write succeeds again.
        with self._db.tx(probe=True) as c:
            c.execute("INSERT OR REPLACE INTO locks(name, holder, expires) VALUES (?,?,?)",
                      ("dynvm-write-probe", f"pid {os.getpid()}", 0.0))
        fault = self._db.write_fault
        if fault is not None:
            raise StoreUnavailable(f"SQLite store {self._db.path}: the last write failed "
                                   f"({fault}) and none has succeeded since")

    def close(self) -> None:
        self._db.close()
