"""The simulator's control endpoint: HTTP + JSON on loopback, for tests and
benchmarks that run the farm in another process (`dynvm sim`).

Its calls are not XenAPI calls and are never counted.

    GET  /health          -> {"ok": true}
    GET  /farm            -> {"pools": [{"name", "master", "hosts": [{"name", "url",
                               "address", "uuid", "ref", "master", "online"}]}],
                              "ca_file": str | null}
    GET  /counts          -> {host name_label: {wire method name: calls}}
    POST /counts/reset    -> {"ok": true}
    POST /faults          -> {"ok": true}; the body is one JSON object:
        {"kind": "unreachable", "host": NAME, "on": true|false}
            the host's listener closes (connections refused) / reopens
        {"kind": "slow", "host": NAME, "seconds": S}
            S extra seconds (wall time, not scaled) before each answer; 0 = off
        {"kind": "fail_next", "method": "VM.clone", "count": N, "code": "CODE",
         "params": ["p1", ...], "host": NAME (optional)}
            the next N calls of that method (any wire spelling, Async too)
            fail with ErrorDescription [CODE, *params]
        {"kind": "dhcp_exhausted", "pool": NAME (optional: every pool), "on": true|false}
            Windows guests then get 169.254.x.y, Linux guests no address
        {"kind": "invalidate_sessions"}
            every pool session becomes SESSION_INVALID (like a xapi restart)
        {"kind": "clear"}
            every fault off: pending fail_next rules, holds, slowness, DHCP exhaustion
            and unreachable hosts
    GET  /timing          -> the farm's Timing (simulated seconds; `speed` divides them)
    POST /timing          -> the new Timing; the body sets any field GET lists, e.g.
        {"host_reboot_secs": 180, "migrate_secs_per_gib": 8, "migrate_base_secs": 2,
         "speed": 100, "boot_secs": {"windows": 90}, "clone_secs": 3}; a per-OS field
        (clone_secs, boot_secs, ip_secs) takes {"linux": S, "windows": S} (either) or one
        number for both; it applies to the next call, reboot or migration started
Errors answer 400 (bad request) or 404 (unknown host / pool / path) with
{"error": message}.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from .faults import UnknownName

if TYPE_CHECKING:
    from .farm import Farm

JSON = "application/json"


def _answer(code: int, obj: Any) -> tuple[int, bytes, str]:
    return code, json.dumps(obj, sort_keys=True).encode(), JSON


def _json_object(body: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object (ValueError otherwise, json's included)."""
    doc = json.loads(body or b"{}")
    if not isinstance(doc, dict):
        raise ValueError("the body must be a JSON object")
    return doc


def _farm_doc(farm: Farm) -> dict[str, Any]:
    return {
        "pools": [
            {
                "name": p.name,
                "master": p.master.name_label,
                "hosts": [
                    {"name": h.name_label, "url": h.url, "address": h.address, "uuid": h.uuid,
                     "ref": h.ref, "master": h.is_master, "online": h.online}
                    for h in p.hosts
                ],
            }
            for p in farm.pools
        ],
        "ca_file": farm.ca_file,
    }


def apply_fault(farm: Farm, body: dict[str, Any]) -> None:
    """Apply one fault document (see the module docstring); raises KeyError/ValueError."""
    kind = body.get("kind")
    on = bool(body.get("on", True))
    if kind == "unreachable":
        farm.set_unreachable(str(body["host"]), on)
    elif kind == "slow":
        farm.set_slow(str(body["host"]), float(body.get("seconds", 0.0)))
    elif kind == "fail_next":
        farm.fail_next(str(body["method"]), int(body.get("count", 1)), str(body["code"]),
                       [str(p) for p in body.get("params") or []], body.get("host"))
    elif kind == "dhcp_exhausted":
        farm.exhaust_dhcp(body.get("pool"), on)
    elif kind == "invalidate_sessions":
        farm.invalidate_sessions()
    elif kind == "clear":
        farm.clear_faults()
    else:
        raise ValueError(f"unknown fault kind {kind!r}")


def timing_doc(farm: Farm) -> dict[str, Any]:
    return dataclasses.asdict(farm.timing)


def set_timing(farm: Farm, body: dict[str, Any]) -> None:
    """Change fields of the farm's Timing (numbers, or per-OS tables); ValueError names a
    bad one and changes nothing."""
    current = {f.name: getattr(farm.timing, f.name) for f in dataclasses.fields(farm.timing)}
    values: dict[str, Any] = {}
    for key, value in body.items():
        if key not in current:
            raise ValueError(f"unknown timing field {key!r}")
        if isinstance(current[key], dict):
            table = dict.fromkeys(current[key], value) if not isinstance(value, dict) else value
            unknown = set(table) - set(current[key])
            if unknown:
                raise ValueError(f"{key} has no {sorted(unknown)[0]!r} (it has "
                                 f"{', '.join(sorted(current[key]))})")
            values[key] = {**current[key], **{k: _seconds(f"{key}.{k}", v)
                                             for k, v in table.items()}}
        else:
            values[key] = _seconds(key, value)
    if values.get("speed", 1.0) <= 0:
        raise ValueError("speed must be > 0")
    for key, value in values.items():
        setattr(farm.timing, key, value)


def _seconds(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{key} must be a number >= 0")
    return float(value)


def handle(farm: Farm, method: str, path: str, body: bytes) -> tuple[int, bytes, str]:
    path = path.split("?", 1)[0].rstrip("/") or "/"
    if method == "GET" and path == "/health":
        return _answer(200, {"ok": True})
    if method == "GET" and path == "/farm":
        return _answer(200, _farm_doc(farm))
    if method == "GET" and path == "/counts":
        return _answer(200, farm.call_counts())
    if method == "POST" and path == "/counts/reset":
        farm.reset_call_counts()
        return _answer(200, {"ok": True})
    if method == "POST" and path == "/faults":
        try:
            apply_fault(farm, _json_object(body))
        except UnknownName as exc:
            return _answer(404, {"error": str(exc)})
        except KeyError as exc:
            return _answer(400, {"error": f"missing field {exc}"})
        except (ValueError, TypeError) as exc:
            return _answer(400, {"error": str(exc)})
        return _answer(200, {"ok": True})
    if method == "GET" and path == "/timing":
        return _answer(200, timing_doc(farm))
    if method == "POST" and path == "/timing":
        try:
            set_timing(farm, _json_object(body))
        except ValueError as exc:
            return _answer(400, {"error": str(exc)})
        return _answer(200, timing_doc(farm))
    return _answer(404, {"error": f"no such endpoint: {method} {path}"})
