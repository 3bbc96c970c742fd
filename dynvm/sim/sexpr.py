"""XAPI's S-expression syntax, as its state.db stores sets and maps: a
parser and the string quoting of its writer."""

from __future__ import annotations

from typing import Any


class SExprError(ValueError):
    """Text that is not a well-formed S-expression."""


def parse_sexpr(text: str) -> Any:
    """Parse XAPI's S-expression syntax: lists in (), strings in '' or "".

    A backslash escapes any next character. Bare atoms are taken as strings.
    Returns nested lists of str.
    """
    if text == "()":
        return []
    pos, n = 0, len(text)
    stack: list[list[Any]] = []
    result: Any = None
    item: Any
    done = False
    while pos < n:
        ch = text[pos]
        if ch in " \t\r\n":
            pos += 1
            continue
        if done:
            raise SExprError(f"trailing data in S-expression at {pos}: {text[:80]!r}")
        if ch == "(":
            stack.append([])
            pos += 1
            continue
        if ch == ")":
            if not stack:
                raise SExprError(f"unbalanced ')' in {text[:80]!r}")
            item = stack.pop()
            pos += 1
        elif ch in "'\"":
            quote = ch
            pos += 1
            parts = []
            start = pos
            while True:
                if pos >= n:
                    raise SExprError(f"unterminated string in {text[:80]!r}")
                c = text[pos]
                if c == "\\":
                    parts.append(text[start:pos])
                    if pos + 1 >= n:
                        raise SExprError(f"dangling backslash in {text[:80]!r}")
                    parts.append(text[pos + 1])
                    pos += 2
                    start = pos
                elif c == quote:
                    parts.append(text[start:pos])
                    pos += 1
                    break
                else:
                    pos += 1
            item = "".join(parts)
        else:
            start = pos
            while pos < n and text[pos] not in " \t\r\n()'\"":
                pos += 1
            item = text[start:pos]
        if stack:
            stack[-1].append(item)
        else:
            result, done = item, True
    if stack:
        raise SExprError(f"unbalanced '(' in {text[:80]!r}")
    if not done:
        raise SExprError("empty S-expression")
    return result


def sexpr_pairs(text: str) -> list[tuple[Any, Any]]:
    """A map as state.db writes it, ((k v) ...), as (key, value) pairs."""
    parsed = parse_sexpr(text)
    if not isinstance(parsed, list):
        raise SExprError(f"map is not a list: {text[:80]!r}")
    pairs = []
    for p in parsed:
        if not isinstance(p, list) or len(p) != 2:
            raise SExprError(f"map entry is not a pair: {p!r}")
        pairs.append((p[0], p[1]))
    return pairs


def sexpr_quote(s: str) -> str:
    """Serialise a string the way XAPI's S-expression writer does."""
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"
