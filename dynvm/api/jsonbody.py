"""JSON request bodies, read safely: bounded in size, in nesting, and without duplicate keys.

Every route that takes a body reads it here. The size limit holds before
anything is parsed: a declared Content-Length over it is refused at once
(`refuse_oversized`, before the route runs), and a chunked body is read
through a stream that stops one byte past the limit (Flask's
MAX_CONTENT_LENGTH), and is then refused the same way. The
nesting is measured on the raw text without recursion before the parser sees
it, so no body can exhaust the stack. A key given twice is refused rather
than silently taking the last value.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from dynvm.core.errors import BadRequest

MAX_BODY_BYTES = 64 * 1024  # documented in the README and the OpenAPI document
# What a body is read up to: one byte more, so that a chunked body past the limit (the
# stream stops there without an error) is told from one exactly at it.
READ_LIMIT = MAX_BODY_BYTES + 1
MAX_DEPTH = 32  # arrays and objects inside one another

# A JSON string (escapes included), or what is left of one never closed: every opening quote
# matches at once, possessively, so no input makes the scan go back over itself.
_STRING = re.compile(r'"(?:[^"\\]++|\\.|\\\Z)*+(?:"|\Z)', re.DOTALL)
_NOT_BRACKETS = re.compile(r'[^\[\]{}]++')
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class BadBody(BadRequest):
    """A body that is not one JSON object within the limits: 400, nothing done."""


def too_large(size: int | None) -> RequestEntityTooLarge:
    """The 413 for a body of `size` bytes (None: chunked, known only to be longer)."""
    told = f"{size} bytes" if size is not None else "longer"
    return RequestEntityTooLarge(f"a body of at most {MAX_BODY_BYTES} bytes (64 KiB) is "
                                 f"accepted; this one is {told}")


def refuse_oversized() -> None:
    """Before any route: a declared body over the limit gets 413 without being read."""
    size = request.content_length
    if size is not None and size > MAX_BODY_BYTES:
        raise too_large(size)


def nesting(text: str) -> int:
    """How deep arrays and objects nest in JSON `text`, strings left out.

    Strings, then everything but brackets, are cut out by two regular expressions
    that cannot backtrack, and the depth is the highest running sum of the
    brackets left: linear in the text whatever it holds, no recursion, no loop
    in Python over its characters.
    """
    brackets = _NOT_BRACKETS.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_object(raw: bytes) -> dict[str, Any]:
    """`raw` as one JSON object, or BadBody saying what is wrong with it."""
    if len(raw) > MAX_BODY_BYTES:  # a chunked body: its size is unknown, only "more"
        raise too_large(None)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadBody("the body is not UTF-8 text") from None
    if nesting(text) > MAX_DEPTH:
        raise BadBody(f"the body nests arrays and objects more than {MAX_DEPTH} levels deep")
    try:
        data = json.loads(text, object_pairs_hook=_unique, parse_constant=_no_constant)
    except _DuplicateKey as exc:
        raise BadBody(f"the key {exc.key[:64]!r} is given more than once in the body") from None
    except ValueError as exc:  # JSONDecodeError, numbers too long, NaN and Infinity
        raise BadBody(f"the body is not valid JSON: {' '.join(str(exc).split())[:200]}"
                      ) from None
    if not isinstance(data, dict):
        raise BadBody("the body must be a JSON object")
    return data


def json_object(*, empty_ok: bool = False) -> dict[str, Any]:
    """The request's body as one JSON object (read at most MAX_BODY_BYTES, chunked or not).

    `empty_ok`: no body at all means `{}` (routes whose every field has a default).
    """
    raw = request.get_data(cache=True)  # at most READ_LIMIT bytes, however it is sent
    if not raw and empty_ok:
        return {}
    if not raw:
        raise BadBody("the body must be a JSON object")
    return parse_object(raw)
