"""XAPI's datamodel as the simulator sees it: classes, fields, messages, enums.

Loaded once from `datamodel.json`, which `tools/gen_datamodel.py` derives from
XAPI's own xenapi.json, so field lists, defaults and message signatures are
XAPI's rather than hand-typed. Also holds the value coercion rules shared by
the wire layer and the database loader (see the "Record representation"
contract: every record holds Python-native values).
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from dynvm.sim.sexpr import parse_sexpr, sexpr_pairs
from dynvm.sim.xapitypes import split_map_type

NULL_REF = "OpaqueRef:NULL"
EPOCH = "19700101T00:00:00Z"

_JSON_PATH = Path(__file__).with_name("datamodel.json")


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str  # as in xenapi.json: "int", "VM ref", "string set", "(string -> string) map", ...
    qualifier: str  # "RW" | "RO/constructor" | "RO/runtime"
    default: Any


@dataclass(frozen=True)
class MessageSpec:
    name: str
    params: tuple[tuple[str, str], ...]  # (name, type), without the leading session param
    result: str | None  # None for void
    session: bool  # False for the login calls
    implicit: bool
    has_async: bool
    errors: tuple[str, ...]
    # Trailing params with XAPI defaults may be left off: callers may send
    # between min_params and len(params) arguments.
    min_params: int = -1

    def __post_init__(self) -> None:
        if self.min_params < 0:
            object.__setattr__(self, "min_params", len(self.params))


@dataclass(frozen=True)
class ClassSpec:
    name: str
    fields: dict[str, FieldSpec]
    messages: dict[str, MessageSpec]
    # Derived one-to-many sets of this class: set_field -> (other_class, fk_field).
    derived: dict[str, tuple[str, str]] = field(default_factory=dict)


def _load() -> tuple[dict[str, ClassSpec], dict[str, tuple[str, ...]], dict]:
    data = json.loads(_JSON_PATH.read_text())
    relations = {(c, f): (o, k) for c, f, o, k in data["relations"]}
    classes: dict[str, ClassSpec] = {}
    for cname, c in data["classes"].items():
        fields = {f[0]: FieldSpec(f[0], f[1], f[2], f[3]) for f in c["fields"]}
        messages = {
            m[0]: MessageSpec(
                name=m[0],
                params=tuple((p[0], p[1]) for p in m[1]),
                result=m[2],
                session=m[3],
                implicit=m[4],
                has_async=m[5],
                errors=tuple(m[6]),
                min_params=m[7],
            )
            for m in c["messages"]
        }
        derived = {f: target for (owner, f), target in relations.items() if owner == cname}
        classes[cname] = ClassSpec(cname, fields, messages, derived)
    enums = {k: tuple(v) for k, v in data["enums"].items()}
    return classes, enums, relations


CLASSES: dict[str, ClassSpec]
ENUMS: dict[str, tuple[str, ...]]
RELATIONS: dict[tuple[str, str], tuple[str, str]]
CLASSES, ENUMS, RELATIONS = _load()

# Lower-cased class name -> declared name (event.from and event records use lower case).
CLASS_BY_LOWER: dict[str, str] = {c.lower(): c for c in CLASSES}


def new_ref() -> str:
    return f"OpaqueRef:{uuid.uuid4()}"


def _is_immutable(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool)) or v is None


@cache
def _defaults(cls: str) -> tuple[tuple[tuple[str, Any], ...], tuple[tuple[str, Any], ...]]:
    spec = CLASSES[cls]
    plain = tuple((n, f.default) for n, f in spec.fields.items() if _is_immutable(f.default))
    containers = tuple((n, f.default) for n, f in spec.fields.items() if not _is_immutable(f.default))
    return plain, containers


def default_record(cls: str) -> dict[str, Any]:
    """Every field of `cls` at its schema default, with fresh containers."""
    plain, containers = _defaults(cls)
    rec = dict(plain)
    for name, value in containers:
        rec[name] = copy.deepcopy(value) if value else type(value)()
    return rec


def empty_tables() -> dict[str, dict[str, dict[str, Any]]]:
    """A pool database with every class present and no rows."""
    return {c: {} for c in CLASSES}


# ---------------------------------------------------------------- coercion


def _to_int(v: Any) -> int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        if v != int(v):
            raise ValueError(f"not an integer: {v!r}")
        return int(v)
    if isinstance(v, (str, bytes)):
        return int(v.strip())
    raise ValueError(f"not an integer: {v!r}")


def _to_float(v: Any) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        return float(v.strip())
    raise ValueError(f"not a float: {v!r}")


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v != 0
    if isinstance(v, str):
        s = v.strip().lower()
        if s in ("true", "1"):
            return True
        if s in ("false", "0"):
            return False
    raise ValueError(f"not a bool: {v!r}")


def _to_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    raise ValueError(f"not a string: {v!r}")


def _to_datetime(v: Any) -> str:
    """XAPI basic format, 20240131T12:34:56Z."""
    if hasattr(v, "value") and isinstance(v.value, str):  # xmlrpc.client.DateTime
        v = v.value
    if isinstance(v, _dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(_dt.UTC).replace(tzinfo=None)
        return v.strftime("%Y%m%dT%H:%M:%SZ")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return _dt.datetime.fromtimestamp(v, _dt.UTC).strftime("%Y%m%dT%H:%M:%SZ")
    if isinstance(v, str):
        s = v.strip()
        if len(s) >= 10 and s[4] == "-":  # ISO 8601 extended form
            s = s[:10].replace("-", "") + s[10:]
            s = s.replace("+00:00", "Z")
        if s and not s.endswith("Z") and len(s) == 17:
            s += "Z"
        return s
    raise ValueError(f"not a datetime: {v!r}")


def _enum_coercer(name: str, strict: bool) -> Callable[[Any], str]:
    values = ENUMS[name]
    lookup = {v.lower(): v for v in values}

    def conv(v: Any) -> str:
        s = _to_str(v)
        hit = lookup.get(s.lower())
        if hit is None:
            if strict:
                raise ValueError(f"{s!r} is not a value of enum {name}")
            return s
        return hit

    return conv


@cache
def coercer(type_: str, strict: bool = True) -> Callable[[Any], Any]:
    """A function turning a wire/DB value of XAPI type `type_` into its native form.

    Strings holding S-expressions (as state.db stores sets and maps) are parsed.
    With `strict=False` unknown enum values are kept as given instead of
    raising, which is what loading old databases needs.
    """
    t = type_.strip()
    if t.endswith(" option"):
        return coercer(t[: -len(" option")], strict)
    if t.startswith("(") and t.endswith(" map"):
        kt, vt = split_map_type(t)
        kconv, vconv = coercer(kt, strict), coercer(vt, strict)

        def conv_map(v: Any) -> dict[str, Any]:
            if isinstance(v, str):
                v = sexpr_pairs(v)
            items: Iterable[tuple[Any, ...]]
            if isinstance(v, dict):
                items = v.items()
            elif isinstance(v, (list, tuple)):
                items = [tuple(p) for p in v]
            else:
                raise ValueError(f"not a map: {v!r}")
            return {_to_str(kconv(k)): vconv(x) for k, x in items}

        return conv_map
    if t.endswith(" set"):
        econv = coercer(t[: -len(" set")], strict)

        def conv_set(v: Any) -> list[Any]:
            if isinstance(v, str):
                v = parse_sexpr(v)
            if not isinstance(v, (list, tuple, set, frozenset)):
                raise ValueError(f"not a set: {v!r}")
            return [econv(x) for x in v]

        return conv_set
    if t.startswith("enum "):
        return _enum_coercer(t[5:], strict)
    if t.endswith(" record"):

        def conv_record(v: Any) -> dict[str, Any]:
            if not isinstance(v, dict):
                raise ValueError(f"not a record: {v!r}")
            return v

        return conv_record
    if t.endswith(" ref"):
        return lambda v: _to_str(v) or NULL_REF
    simple: dict[str, Callable[[Any], Any]] = {
        "int": _to_int,
        "float": _to_float,
        "bool": _to_bool,
        "datetime": _to_datetime,
    }
    return simple.get(t, _to_str)


def coerce(type_: str, value: Any) -> Any:
    """Wire/DB value -> native value for XAPI type `type_` (raises ValueError)."""
    return coercer(type_)(value)


# ------------------------------------------------------------ whole tables

Tables = dict[str, dict[str, dict[str, Any]]]


def rebuild_derived(tables: Tables) -> None:
    """Refill every one-to-many ref set (VM.VBDs, host.resident_VMs, ...) from
    the foreign keys on the other side, as xapi does when it loads a database."""
    for (cls, set_field), (other, fk) in RELATIONS.items():
        owners = tables.get(cls)
        rows = tables.get(other)
        if owners is None or rows is None:
            continue
        index: dict[str, list[str]] = {ref: [] for ref in owners}
        for ref, row in rows.items():
            target = row.get(fk)
            bucket = index.get(target) if isinstance(target, str) else None
            if bucket is not None:
                bucket.append(ref)
        for ref, rec in owners.items():
            rec[set_field] = index[ref]


def ref_fields(cls: str) -> list[tuple[str, str, bool]]:
    """(field, target class, is_set) for every ref-valued field of `cls`."""
    out = []
    for f in CLASSES[cls].fields.values():
        t = f.type
        if t.endswith(" ref"):
            out.append((f.name, t[:-4], False))
        elif t.endswith(" ref set"):
            out.append((f.name, t[:-8], True))
    return out


def dangling_refs(tables: Tables) -> list[str]:
    """Descriptions of every non-null ref that names no row of its class."""
    problems = []
    for cls, rows in tables.items():
        if cls not in CLASSES:
            continue
        fields = ref_fields(cls)
        for ref, rec in rows.items():
            for name, target, is_set in fields:
                if target not in tables:
                    continue
                values = rec.get(name, [] if is_set else NULL_REF)
                for v in values if is_set else (values,):
                    if v != NULL_REF and v not in tables[target]:
                        problems.append(f"{cls} {ref}: {name} -> missing {target} {v}")
    return problems
