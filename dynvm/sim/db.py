"""One pool's database: tables, change tracking for events, and an XML cache.

Every mutation goes through `create` / `modify` / `destroy` so that the
derived one-to-many sets (VM.VBDs, host.resident_VMs, ...) stay in step with
their foreign keys, `event.from` sees every change, and the cached XML body
of each changed record is dropped.  Readers that need a consistent view of
several objects hold `lock` (re-entrant); long waits never happen under it.
"""

from __future__ import annotations

import threading
import time
import uuid as uuidlib
from collections.abc import Iterable
from typing import Any

from . import datamodel
from .wire import DateTime, Raw, XapiError, encode_value

Tables = dict[str, dict[str, dict[str, Any]]]
NULL = datamodel.NULL_REF


def now_stamp() -> str:
    """The current time in xapi's basic datetime format."""
    return time.strftime("%Y%m%dT%H:%M:%SZ", time.gmtime())


def _datetime_fields(cls: str) -> frozenset[str]:
    spec = datamodel.CLASSES.get(cls)
    if spec is None:
        return frozenset()
    return frozenset(n for n, f in spec.fields.items() if f.type == "datetime")


class Database:
    """A pool's tables plus a generation counter, change log and XML cache."""

    def __init__(self, tables: Tables) -> None:
        self.tables: Tables = tables
        for cls in datamodel.CLASSES:
            tables.setdefault(cls, {})
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.generation = 0
        # (class, ref) -> generation of its last change; dict order == change order.
        self._log: dict[tuple[str, str], int] = {}
        self._created: dict[tuple[str, str], int] = {}
        self._deleted: list[tuple[int, str, str]] = []
        self._xml: dict[str, str] = {}
        self._dt_fields = {cls: _datetime_fields(cls) for cls in datamodel.CLASSES}
        # (child class, fk field) -> [(parent class, set field)]
        self._fks: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for (parent, set_field), (child, fk) in datamodel.RELATIONS.items():
            self._fks.setdefault((child, fk), []).append((parent, set_field))
        self._fks_by_class: dict[str, list[tuple[str, str, str]]] = {}
        for (child, fk), parents in self._fks.items():
            for parent, set_field in parents:
                self._fks_by_class.setdefault(child, []).append((fk, parent, set_field))
        self._uuids: dict[str, str] = {}
        for table in tables.values():
            for ref, rec in table.items():
                u = rec.get("uuid")
                if u:
                    self._uuids[u] = ref

    # ----------------------------------------------------------------- reads
    def get(self, cls: str, ref: str) -> dict[str, Any]:
        """The live record (do not mutate it directly); HANDLE_INVALID if absent."""
        rec = self.tables.get(cls, {}).get(ref)
        if rec is None:
            raise XapiError("HANDLE_INVALID", cls, ref)
        return rec

    def find(self, cls: str, ref: str) -> dict[str, Any] | None:
        return self.tables.get(cls, {}).get(ref)

    def by_uuid(self, cls: str, uuid: str) -> str:
        ref = self._uuids.get(uuid)
        if ref is None or ref not in self.tables.get(cls, {}):
            raise XapiError("UUID_INVALID", cls, uuid)
        return ref

    def select(self, cls: str, **match: Any) -> list[str]:
        """Refs of `cls` whose fields equal all of `match`."""
        with self.lock:  # a concurrent create would end the scan with a RuntimeError
            return [
                ref
                for ref, rec in self.tables.get(cls, {}).items()
                if all(rec.get(k) == v for k, v in match.items())
            ]

    def record_xml(self, cls: str, ref: str) -> Raw:
        """The `<value><struct>` encoding of a record, cached until it changes."""
        with self.lock:
            rec = self.get(cls, ref)
            frag = self._xml.get(ref)
            if frag is None:
                frag = self._encode_record(cls, rec)
                self._xml[ref] = frag
        return Raw(frag)

    def all_records_xml(self, cls: str) -> Raw:
        """`get_all_records` body: a struct ref -> record built from cached fragments."""
        parts = ["<value><struct>"]
        with self.lock:
            table = self.tables.get(cls, {})
            cache = self._xml
            for ref, rec in table.items():
                frag = cache.get(ref)
                if frag is None:
                    frag = self._encode_record(cls, rec)
                    cache[ref] = frag
                parts.append("<member><name>")
                parts.append(ref)
                parts.append("</name>")
                parts.append(frag)
                parts.append("</member>")
        parts.append("</struct></value>")
        return Raw("".join(parts))

    def _encode_record(self, cls: str, rec: dict[str, Any]) -> str:
        dts = self._dt_fields.get(cls, frozenset())
        out = ["<value><struct>"]
        for name, value in rec.items():
            out.append("<member><name>")
            out.append(name)
            out.append("</name>")
            if name in dts and type(value) is str:
                encode_value(DateTime(value), out)
            else:
                encode_value(value, out)
            out.append("</member>")
        out.append("</struct></value>")
        return "".join(out)

    # ---------------------------------------------------------------- writes
    def _touch(self, cls: str, ref: str) -> None:
        key = (cls, ref)
        self._log.pop(key, None)
        self._log[key] = self.generation
        self._xml.pop(ref, None)

    def _bump(self) -> int:
        self.generation += 1
        return self.generation

    def _link(self, child_ref: str, parent: str, set_field: str, target: Any, add: bool) -> None:
        """Add `child_ref` to (or remove it from) the derived set `set_field`
        of the `parent` record `target` its foreign key points at."""
        if not isinstance(target, str) or target == NULL:
            return
        prec = self.tables.get(parent, {}).get(target)
        if prec is None:
            return
        members = prec.get(set_field)
        if not isinstance(members, list):
            members = prec[set_field] = []
        if add:
            if child_ref not in members:
                members.append(child_ref)
        elif child_ref in members:
            members.remove(child_ref)
        self._touch(parent, target)

    def create(self, cls: str, fields: dict[str, Any] | None = None, ref: str | None = None) -> str:
        """Insert a record (schema defaults for missing fields); returns its ref."""
        with self.lock:
            rec = datamodel.default_record(cls)
            if fields:
                rec.update(fields)
            if "uuid" in rec and not rec["uuid"]:
                rec["uuid"] = str(uuidlib.uuid4())
            ref = ref or datamodel.new_ref()
            self.tables.setdefault(cls, {})[ref] = rec
            if rec.get("uuid"):
                self._uuids[rec["uuid"]] = ref
            self._bump()
            self._created[(cls, ref)] = self.generation
            self._touch(cls, ref)
            for fk, parent, set_field in self._fks_by_class.get(cls, ()):
                self._link(ref, parent, set_field, rec.get(fk), True)
            self.changed.notify_all()
            return ref

    def modify(self, cls: str, ref: str, changes: dict[str, Any]) -> None:
        """Set fields of an existing record, keeping derived sets in step."""
        with self.lock:
            rec = self.get(cls, ref)
            self._bump()
            for name, value in changes.items():
                old = rec.get(name)
                rec[name] = value
                for parent, set_field in self._fks.get((cls, name), ()):
                    if old != value:
                        self._link(ref, parent, set_field, old, False)
                        self._link(ref, parent, set_field, value, True)
            self._touch(cls, ref)
            self.changed.notify_all()

    def destroy(self, cls: str, ref: str) -> None:
        with self.lock:
            rec = self.get(cls, ref)
            self._bump()
            for fk, parent, set_field in self._fks_by_class.get(cls, ()):
                self._link(ref, parent, set_field, rec.get(fk), False)
            del self.tables[cls][ref]
            self._uuids.pop(rec.get("uuid", ""), None)
            self._log.pop((cls, ref), None)
            self._created.pop((cls, ref), None)
            self._xml.pop(ref, None)
            self._deleted.append((self.generation, cls, ref))
            if len(self._deleted) > 100_000:
                del self._deleted[:50_000]
            self.changed.notify_all()

    def discard(self, cls: str, ref: str) -> None:
        """Destroy the record if it exists: a NULL or stale reference is no error."""
        with self.lock:
            if self.find(cls, ref) is not None:
                self.destroy(cls, ref)

    # ---------------------------------------------------------------- events
    def changes_since(self, gen: int, classes: Iterable[str] | None = None
                      ) -> list[tuple[int, str, str, str]]:
        """(generation, operation, class, ref) of every change after `gen`, oldest first."""
        wanted = None if classes is None else set(classes)
        out: list[tuple[int, str, str, str]] = []
        with self.lock:
            for (cls, ref), g in reversed(self._log.items()):
                if g <= gen:
                    break
                if wanted is not None and cls not in wanted:
                    continue
                op = "add" if self._created.get((cls, ref), 0) > gen else "mod"
                out.append((g, op, cls, ref))
            for g, cls, ref in reversed(self._deleted):
                if g <= gen:
                    break
                if wanted is None or cls in wanted:
                    out.append((g, "del", cls, ref))
        out.sort(key=lambda e: e[0])
        return out
