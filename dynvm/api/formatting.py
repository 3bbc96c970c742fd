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
    the last body is reused. The text is what `json.dumps(indent=2,
    sort_keys=True)` writes, row by row: that encoder (pure Python once
    indenting) makes a dozen pieces per row and a copy of each row, which at
    10,000 VMs took ~10 ms per 2,000 rows and left megabytes of freed pieces
    scattered through a worker's memory.
    """
    global _showall_last
    last = _showall_last
    if last is not None and last[0] is hosts:
        return last[1]
    blocks = []
    for ref, rows in sorted((int(ref), rows) for ref, rows in hosts.items()):
        text = ",\n".join([_SHOWALL_ROW.format(*[_json_value(row.get(k)) for k in _SORTED_FIELDS])
                           for row in rows])
        blocks.append(f'  "{ref}": [\n{text}\n  ]' if text else f'  "{ref}": []')
    text = "{\n" + ",\n".join(blocks) + "\n}" if blocks else "{}"
    _showall_last = (hosts, text)
    return text


_SORTED_FIELDS = sorted(SHOWALL_FIELDS)
_SHOWALL_ROW = "    {{\n" + ",\n".join(f'      "{k}": {{}}' for k in _SORTED_FIELDS) + "\n    }}"
_quoted = json.encoder.encode_basestring_ascii  # json.dumps's own (C) string encoder


def _json_value(value: object) -> str:
    return _quoted(value) if value.__class__ is str else json.dumps(value)


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
