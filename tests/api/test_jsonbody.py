"""Reading a JSON body: nesting measured on the raw text, keys once, numbers as JSON has them."""

from __future__ import annotations

import pytest

from dynvm.api.jsonbody import MAX_DEPTH, BadBody, nesting, parse_object


@pytest.mark.parametrize(("text", "depth"), [
    ("", 0),
    ('{"a": 1}', 1),
    ('{"a": [1, {"b": "[[[{{"}]}', 3),          # brackets inside strings do not count
    ('{"a": "\\"[[[", "b": [[]]}', 3),           # nor after an escaped quote
    ('["\\\\", [[]]]', 3),                        # an escaped backslash ends before the quote
    ('["a\\\\\\"[[[[", []]', 2),
    ('[[["never closed \\', 3),                   # not JSON: the parser refuses it after
    ("[" * 100_000, 100_000),
])
def test_nesting_is_counted_outside_strings(text: str, depth: int) -> None:
    assert nesting(text) == depth


def test_too_deep_a_body_is_refused_before_it_is_parsed() -> None:
    ok = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    assert parse_object(f'{{"a": {ok}}}'.encode())["a"]
    with pytest.raises(BadBody, match="more than 32 levels deep"):
        parse_object(f'{{"a": [{ok}]}}'.encode())


@pytest.mark.parametrize(("raw", "why"), [
    (b'{"count": 1, "count": 50}', "'count' is given more than once"),
    (b'{"a": {"x": 1, "x": 1}}', "'x' is given more than once"),
    (b'{"count": NaN}', "not valid JSON"),
    (b'{"count": Infinity}', "not valid JSON"),
    (b'{"count": ' + b"9" * 5000 + b"}", "not valid JSON"),
    (b'{"os": "\xff"}', "not UTF-8"),
    (b"[]", "must be a JSON object"),
    (b'{"os": "centos"', "not valid JSON"),
])
def test_bad_bodies_say_what_is_wrong(raw: bytes, why: str) -> None:
    with pytest.raises(BadBody, match=why):
        parse_object(raw)
