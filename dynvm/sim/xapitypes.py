"""Parsing XAPI's type strings ("(string -> VM ref) map"), shared by the datamodel and its generator."""

from __future__ import annotations


def split_map_type(t: str) -> tuple[str, str]:
    """'(k -> v) map' -> ('k', 'v'), respecting nested parentheses."""
    inner = t[1 : t.rindex(")")]
    depth = 0
    for i, ch in enumerate(inner):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and inner.startswith(" -> ", i):
            return inner[:i], inner[i + 4 :]
    raise ValueError(f"bad map type {t!r}")
