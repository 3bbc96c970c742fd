"""Load a real xapi database dump (state.db XML) into simulator tables.

Both writer generations are accepted (see xapi-reference.md section 4): column
names with "__" namespaces, "%" whitespace protection (old "%_" and new "%."
styles), S-expression sets and maps in either quote style with backslash
escapes, missing columns (filled with schema defaults) and one-to-many sets
that older writers omit (rebuilt from the foreign keys, as xapi does). Tables
and columns the datamodel does not know are dropped, so any dump from
XenServer 5.6 on loads into the current schema.
"""

from __future__ import annotations

import logging
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from dynvm.sim.datamodel import (
    CLASSES,
    Tables,
    coercer,
    default_record,
    empty_tables,
    rebuild_derived,
)

log = logging.getLogger(__name__)

_META_COLUMNS = frozenset({"ref", "_ref", "__ctime", "__mtime"})
_PROTECTED = {"_": "  ", ".": " ", "n": "\n", "t": "\t", "r": "\r", "%": "%"}
_PROTECT_RE = re.compile(r"%(.)", re.S)


def unprotect(value: str) -> str:
    """Undo xapi's XML whitespace protection: %_ (two spaces), %. (space),
    %n %t %r (LF, TAB, CR), %% (percent). Unknown escapes are kept as written."""
    if "%" not in value:
        return value
    return _PROTECT_RE.sub(lambda m: _PROTECTED.get(m.group(1), m.group(0)), value)


def _read(source: str | os.PathLike[str] | bytes) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, str) and source.lstrip().startswith("<"):
        return source.encode()
    return Path(source).read_bytes()


def _column_plan(cls: str) -> dict[str, tuple[str, Any]]:
    """DB column name -> (API field, converter) for one class."""
    plan = {}
    for name, spec in CLASSES[cls].fields.items():
        conv = coercer(spec.type, False)
        plan[name] = (name, conv)
    return plan


_PLANS: dict[str, dict[str, tuple[str, Any]]] = {}


def load_state_db(source: str | os.PathLike[str] | bytes) -> Tables:
    """Parse a state.db dump (a path, or the XML itself as bytes/str) into Tables."""
    root = ET.fromstring(_read(source))
    if root.tag != "database":
        raise ValueError(f"not a xapi database: root element is <{root.tag}>")
    tables = empty_tables()
    for table in root.iter("table"):
        cls = table.get("name", "")
        if cls not in CLASSES:
            log.debug("ignoring table %s unknown to the datamodel", cls)
            continue
        plan = _PLANS.get(cls)
        if plan is None:
            plan = _PLANS[cls] = _column_plan(cls)
        rows = tables[cls]
        for row in table.iter("row"):
            attrs = row.attrib
            ref = attrs.get("ref") or attrs.get("_ref")
            if not ref:
                raise ValueError(f"row without ref in table {cls}")
            rec = default_record(cls)
            for column, raw in attrs.items():
                if column in _META_COLUMNS:
                    continue
                entry = plan.get(column)
                if entry is None:
                    entry = plan.get(column.replace("__", "_"))
                    if entry is None:
                        continue  # a column this schema no longer has
                field, conv = entry
                try:
                    rec[field] = conv(unprotect(raw))
                except ValueError as e:
                    log.debug("%s %s: keeping default for %s=%r (%s)", cls, ref, column, raw, e)
            if cls == "VM" and "is_default_template" not in attrs:
                # Older schemas flag XenServer's own templates only in other_config,
                # as xapi's database upgrade knows.
                rec["is_default_template"] = rec["other_config"].get("default_template") == "true"
            rows[ref] = rec
    rebuild_derived(tables)
    return tables


def read_manifest(source: str | os.PathLike[str] | bytes) -> dict[str, str]:
    """The dump's <manifest> pairs (schema version, generation, ...)."""
    root = ET.fromstring(_read(source))
    manifest = root.find("manifest")
    if manifest is None:
        return {}
    return {p.get("key", ""): p.get("value", "") for p in manifest.iter("pair")}


def user_vms(tables: Tables) -> dict[str, dict[str, Any]]:
    """VMs that are guests: not templates (snapshots are templates too) nor control domains."""
    return {
        ref: vm
        for ref, vm in tables["VM"].items()
        if not vm["is_a_template"] and not vm["is_control_domain"]
    }


def pool_summary(tables: Tables) -> dict[str, Any]:
    """Counts a person checks first: hosts, guests (running), templates, SRs.

    `templates` counts every VM row flagged is_a_template, snapshots included
    (as XenCenter's tree does); `snapshots` says how many of those are snapshots."""
    guests = user_vms(tables)
    pool = next(iter(tables["pool"].values()), None)
    master = tables["host"].get(pool["master"]) if pool else None
    return {
        "name": pool["name_label"] if pool else "",
        "master": master["name_label"] if master else "",
        "hosts": len(tables["host"]),
        "vms": len(guests),
        "running_vms": sum(1 for vm in guests.values() if vm["power_state"] == "Running"),
        "templates": sum(1 for vm in tables["VM"].values() if vm["is_a_template"]),
        "snapshots": sum(1 for vm in tables["VM"].values() if vm["is_a_snapshot"]),
        "srs": len(tables["SR"]),
    }
