#!/usr/bin/env python3
"""Generate dynvm/sim/datamodel.json from XAPI's machine-readable API (xenapi.json).

The simulator needs only a sliver of xenapi.json (1.4 MB of prose): field types,
qualifiers and defaults, message signatures and errors, enums. This script keeps
that sliver, parses XAPI's OCaml-flavoured defaults into JSON values, makes the
implicit messages explicit and derives the one-to-many relations, so the
simulator never has to read the big file at run time.

Usage: python tools/gen_datamodel.py [path/to/xenapi.json] [-o output.json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from dynvm.sim.xapitypes import split_map_type

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO.parent / "shared" / "docs" / "xenapi.json"
DEFAULT_OUTPUT = REPO / "dynvm" / "sim" / "datamodel.json"

NULL_REF = "OpaqueRef:NULL"
EPOCH = "19700101T00:00:00Z"

# Classes whose messages never get an Async form (XAPI's rule).
NO_ASYNC_CLASSES = {"session", "task", "event"}

# Trailing parameters XAPI lets callers leave off ("versioned params");
# xenapi.json does not record their defaults, so list them here.
MIN_PARAMS = {
    ("session", "login_with_password"): 2,
    ("host", "evacuate"): 1,
    ("VDI", "copy"): 2,
}

# Derived one-to-many sets whose foreign key cannot be guessed from the types
# alone (the other class has several refs back to this one). From XAPI's
# datamodel `all_relations`.
RELATION_OVERRIDES: dict[tuple[str, str], tuple[str, str] | None] = {
    ("host", "resident_VMs"): ("VM", "resident_on"),
    ("VM", "snapshots"): ("VM", "snapshot_of"),
    ("VM", "children"): ("VM", "parent"),
    ("task", "subtasks"): ("task", "subtask_of"),
    ("PGPU", "resident_VGPUs"): ("VGPU", "resident_on"),
    ("PIF", "bond_slave_of"): None,
    ("PIF", "bond_master_of"): ("Bond", "master"),
    ("Bond", "slaves"): ("PIF", "bond_slave_of"),
    ("PIF", "VLAN_slave_of"): ("VLAN", "tagged_PIF"),
    ("PIF", "tunnel_access_PIF_of"): ("tunnel", "access_PIF"),
    ("PIF", "tunnel_transport_PIF_of"): ("tunnel", "transport_PIF"),
    ("PIF", "sriov_physical_PIF_of"): ("network_sriov", "physical_PIF"),
    ("PIF", "sriov_logical_PIF_of"): ("network_sriov", "logical_PIF"),
    ("PCI", "virtual_functions"): ("PCI", "physical_function"),
    ("VDI", "snapshots"): ("VDI", "snapshot_of"),
    ("PVS_site", "servers"): ("PVS_server", "site"),
    ("PVS_site", "proxies"): ("PVS_proxy", "site"),
    ("PVS_site", "cache_storage"): ("PVS_cache_storage", "site"),
    ("DR_task", "introduced_SRs"): ("SR", "introduced_by"),
    ("pool", "metadata_VDIs"): ("VDI", "metadata_of_pool"),
    ("VM", "VTPMs"): ("VTPM", "VM"),
}

# Fields XAPI gained after the API description was generated (2024-03) that the
# simulator models: (class, name, type, qualifier, default). The guest agent's
# `data/host_name` is reported in VM_guest_metrics.netbios_name["host_name"].
FIELDS_SINCE_DESCRIPTION: list[tuple[str, str, str, str, Any]] = [
    ("VM_guest_metrics", "netbios_name", "(string -> string) map", "RO/runtime", {}),
]

# Message rows in the output: [name, params, result, session, implicit, has_async, errors, min_params]
MESSAGE_KEYS = ("name", "params", "result", "session", "implicit", "has_async", "errors", "min_params")


def type_default(t: str, enums: dict[str, list[str]]) -> Any:
    """What XAPI fills in when a field has no declared default."""
    if t.endswith(" map"):
        return {}
    if t.endswith(" set"):
        return []
    if t.endswith(" ref"):
        return NULL_REF
    if t.endswith(" record"):
        return {}
    if t.endswith(" option"):
        return type_default(t[: -len(" option")], enums)
    if t.startswith("enum "):
        return enums[t[5:]][0]
    return {"string": "", "int": 0, "float": 0.0, "bool": False, "datetime": EPOCH}.get(t, "")


def _split_items(body: str) -> list[str]:
    """Split '"a" -> "b", "c" -> "d"' on top-level commas (quotes respected)."""
    items, cur, quote = [], [], False
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and quote:
            cur.append(body[i : i + 2])
            i += 2
            continue
        if ch == '"':
            quote = not quote
        if ch == "," and not quote:
            items.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    if "".join(cur).strip():
        items.append("".join(cur).strip())
    return items


def _scalar(text: str, t: str, enums: dict[str, list[str]]) -> Any:
    text = text.strip()
    if text.startswith('"') and text.endswith('"'):
        text = json.loads(text)
    if t == "int":
        return int(text)
    if t == "float":
        return float(text)
    if t == "bool":
        return text == "true"
    if t.endswith(" ref"):
        return NULL_REF if text in ("Null", "", NULL_REF) else text
    if t.startswith("enum "):
        values = enums[t[5:]]
        for v in values:
            if v.lower() == text.lower():
                return v
        raise ValueError(f"default {text!r} not in enum {t}")
    return text


def parse_default(raw: str, t: str, enums: dict[str, list[str]]) -> Any:
    """Parse xenapi.json's printed default ('{}', '"x"', '1.', 'Null', '{"a" -> "b"}')."""
    if t.endswith(" map"):
        kt, vt = split_map_type(t)
        body = raw.strip()[1:-1]
        out = {}
        for item in _split_items(body):
            k, v = item.split(" -> ", 1)
            out[str(_scalar(k, kt, enums))] = _scalar(v, vt, enums)
        return out
    if t.endswith(" set"):
        et = t[: -len(" set")]
        return [_scalar(x, et, enums) for x in _split_items(raw.strip()[1:-1])]
    if t.endswith(" option") or t.endswith(" record"):
        return type_default(t, enums)
    return _scalar(raw, t, enums)


def _msg(name: str, params: list[tuple[str, str]], result: str | None, *, session: bool = True,
         implicit: bool = True, errors: tuple[str, ...] = (), min_params: int | None = None) -> dict:
    return {"name": name, "params": params, "result": result, "session": session,
            "implicit": implicit, "errors": list(errors),
            "min_params": len(params) if min_params is None else min_params}


def is_accessor(name: str, field_names: set[str]) -> bool:
    """Implicit field accessors and queries: these never have an Async form."""
    if name in ("get_record", "get_all", "get_all_records", "get_all_records_where", "get_by_uuid",
                "get_by_name_label") or name.startswith("get_by_"):
        return True
    for prefix in ("get_", "set_", "add_to_", "remove_from_", "add_", "remove_"):
        if name.startswith(prefix) and name[len(prefix):] in field_names:
            return True
    return False


def build(source: dict | list) -> dict:
    classes_in = source
    enums: dict[str, list[str]] = {}
    for c in classes_in:
        for e in c.get("enums", []):
            enums[e["name"]] = [v["name"] for v in e["values"]]

    classes: dict[str, dict] = {}
    for c in classes_in:
        cname = c["name"]
        fields = []
        for f in c["fields"]:
            t = f["type"]
            default = parse_default(f["default"], t, enums) if "default" in f else type_default(t, enums)
            fields.append([f["name"], t, f["qualifier"], default])
        fields += [[name, t, qual, default] for c2, name, t, qual, default
                   in FIELDS_SINCE_DESCRIPTION
                   if c2 == cname and name not in {f[0] for f in fields}]
        field_names = {f[0] for f in fields}

        messages: dict[str, dict] = {}
        for m in c["messages"]:
            params = [(p["name"], p["type"]) for p in m["params"]]
            session = bool(params) and params[0] == ("session_id", "session ref")
            if session:
                params = params[1:]
            result = None if m["result"][0] == "void" else m["result"][0]
            errors = tuple(dict.fromkeys(e["name"] for e in m["errors"]))
            messages[m["name"]] = _msg(m["name"], params, result, session=session,
                                       implicit=bool(m["implicit"]), errors=errors,
                                       min_params=MIN_PARAMS.get((cname, m["name"])))

        # Database-backed classes (those with generated field getters) get every
        # implicit message, including the ones xenapi.json leaves out. Classes
        # with hand-written accessors only (message) or none (event) keep theirs.
        if "get_record" in messages and any(f"get_{f}" in messages for f in field_names):
            ref, rec = f"{cname} ref", f"{cname} record"
            implicit: list[dict] = [
                _msg("get_record", [("self", ref)], rec),
                _msg("get_by_uuid", [("uuid", "string")], ref),
                _msg("get_all", [], f"{ref} set"),
                _msg("get_all_records", [], f"({ref} -> {rec}) map"),
                _msg("get_all_records_where", [("expr", "string")], f"({ref} -> {rec}) map"),
            ]
            if "name_label" in field_names and cname != "pool":
                implicit.append(_msg("get_by_name_label", [("label", "string")], f"{ref} set"))
            for fname, t, qual, _ in fields:
                implicit.append(_msg(f"get_{fname}", [("self", ref)], t))
                if qual != "RW":
                    continue
                implicit.append(_msg(f"set_{fname}", [("self", ref), ("value", t)], None))
                if t.endswith(" map"):
                    kt, vt = split_map_type(t)
                    implicit.append(_msg(f"add_to_{fname}", [("self", ref), ("key", kt), ("value", vt)], None))
                    implicit.append(_msg(f"remove_from_{fname}", [("self", ref), ("key", kt)], None))
                elif t.endswith(" set"):
                    et = t[: -len(" set")]
                    implicit.append(_msg(f"add_{fname}", [("self", ref), ("value", et)], None))
                    implicit.append(_msg(f"remove_{fname}", [("self", ref), ("value", et)], None))
            for m in implicit:
                messages.setdefault(m["name"], m)

        for name, m in messages.items():
            m["has_async"] = cname not in NO_ASYNC_CLASSES and not (
                m["implicit"] and is_accessor(name, field_names)
            )
        classes[cname] = {
            "fields": fields,
            "messages": [[m[k] for k in MESSAGE_KEYS] for m in messages.values()],
        }

    return {"classes": classes, "enums": enums, "relations": derive_relations(classes)}


def derive_relations(classes: dict[str, dict]) -> list[list[str]]:
    """(class, set_field) -> (other_class, fk_field) for every derived ref set."""
    rels = []
    for cname, c in classes.items():
        for fname, t, qual, _ in c["fields"]:
            if qual != "RO/runtime" or not t.endswith(" ref set"):
                continue
            other = t[: -len(" ref set")]
            key = (cname, fname)
            if key in RELATION_OVERRIDES:
                target = RELATION_OVERRIDES[key]
                if target is not None:
                    rels.append([cname, fname, *target])
                continue
            if other not in classes:
                continue
            fks = [f[0] for f in classes[other]["fields"] if f[1] == f"{cname} ref"]
            if len(fks) == 1:
                rels.append([cname, fname, other, fks[0]])
    return rels


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", nargs="?", default=str(DEFAULT_SOURCE))
    ap.add_argument("-o", "--output", default=str(DEFAULT_OUTPUT))
    args = ap.parse_args(argv)
    data = build(json.loads(Path(args.source).read_text()))
    text = json.dumps(data, separators=(",", ":"), sort_keys=False)
    # One class per line keeps diffs readable without bloating the file.
    text = re.sub(r',"(?=[A-Za-z_]+":\{"fields")', ',\n"', text)
    Path(args.output).write_text(text + "\n")
    print(f"wrote {args.output}: {len(data['classes'])} classes, {len(data['enums'])} enums, "
          f"{len(data['relations'])} relations, {len(text)} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
