"""Byte-exact answer bodies of the legacy API.

Jenkins jobs parse these with grep/cut/sed, so the layout (indentation, key
order, one entry per line) is part of the contract, not a detail.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

from dynvm.core.services import ServerResult

SHOWALL_FIELDS = (
    "name",
    "power_state",
    "vcpus",
    "memory_static_max",
    "networkinfo",
    "name_description",
)


def ip_list(servers: Sequence[ServerResult]) -> str:
    """format absent / servermanager: `["10.0.0.1", "10.0.0.2"]`."""
    return json.dumps([s.ip for s in servers])


def detailed(servers: Sequence[ServerResult]) -> str:
    """format=detailed: one `"name": "ip"` per line, indent 2, names sorted."""
    return json.dumps({s.name: s.ip for s in servers}, indent=2, sort_keys=True)


_showall_last: tuple[object, str] | None = None


def showall(hosts: Mapping[int, Iterable[Mapping[str, object]]]) -> str:
    """Host number -> VM rows; integer keys so hosts sort 1, 2, ..., 10 numerically.

    The core hands back the very same rows while the farm has not changed, so
    the last body is reused (indenting 2000 rows costs ~10 ms per request).
    """
    global _showall_last
    last = _showall_last
    if last is not None and last[0] is hosts:
        return last[1]
    body = {
        int(ref): [{k: row.get(k) for k in SHOWALL_FIELDS} for row in rows]
        for ref, rows in hosts.items()
    }
    text = json.dumps(body, indent=2, sort_keys=True)
    _showall_last = (hosts, text)
    return text


def names(changed: Sequence[str]) -> str:
    """/releaseservers and /setexpiry: the names acted on, indent 2."""
    return json.dumps(list(changed), indent=2)


def count(value: int) -> str:
    """/getavailablecount: a bare integer, as text."""
    return str(int(value))


def label_counts(rows: Sequence[Mapping[str, object]]) -> str:
    """/getavailablecount?alllabels=true: `[{"label": L, "count": N}, ...]`."""
    return json.dumps([{"label": r["label"], "count": r["count"]} for r in rows])


ECHO_LIMIT = 100  # characters of user input an error body or log line may repeat


def echo(text: str, limit: int = ECHO_LIMIT) -> str:
    """User input made safe to repeat in an error body or a log line.

    Control and other non-printable characters (CR, LF, ESC, NUL, DEL, U+2028,
    bidi overrides...) are written as Python escapes, so a request can never
    forge a log line or drive a terminal; the result is cut to `limit`
    characters with `...` marking the cut.
    """
    out: list[str] = []
    size = 0
    for ch in text:
        piece = ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
        if ch == "\\":
            piece = "\\\\"
        if size + len(piece) > limit:
            out.append("...")
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)


def host_list(refs: Iterable[int]) -> str:
    """Value of the X-Dynvm-Unreachable header: `2,5`."""
    return ",".join(str(r) for r in sorted(refs))
