"""XML-RPC encoding exactly as xapi writes it (ocaml-rpc's non-strict mode).

Hand-rolled rather than `xmlrpc.client.dumps` because xapi's output differs
(64-bit ints travel as untyped strings, strings carry no `<string>` tag) and
because `get_all_records` on thousands of objects must be cheap: record
bodies are encoded once and cached by the database as raw fragments.
"""

from __future__ import annotations

import re
import xmlrpc.client
from typing import Any

__all__ = [
    "I4",
    "DateTime",
    "Raw",
    "XapiError",
    "decode_request",
    "encode",
    "encode_value",
    "escape",
    "failure",
    "success",
    "task_result",
]


class XapiError(Exception):
    """An XAPI failure: sent back as `{"Status": "Failure", "ErrorDescription": [code, *params]}`."""

    def __init__(self, code: str, *params: Any) -> None:
        self.code = code
        self.params = [str(p) for p in params]
        super().__init__(code, *self.params)

    @property
    def description(self) -> list[str]:
        return [self.code, *self.params]


class I4(int):
    """An int sent as `<i4>` (only event.from's valid_ref_counts uses this)."""


class DateTime(str):
    """A datetime in xapi's basic format, sent as `<dateTime.iso8601>`."""


class Raw(str):
    """An already encoded `<value>...</value>` fragment, sent verbatim."""


_NEEDS_ESCAPE = re.compile(r'[&<>"\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def escape(text: str) -> str:
    """XML-escape `& < > "` and drop control characters, as ocaml-rpc does."""
    if not _NEEDS_ESCAPE.search(text):
        return text
    text = _CONTROL.sub("", text)
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def _fmt_double(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return "%.16g" % value


def encode_value(value: Any, out: list[str]) -> None:
    """Append the `<value>` encoding of a native value to `out`."""
    t = type(value)
    if t is str:
        out.append("<value>")
        out.append(escape(value))
        out.append("</value>")
    elif t is dict:
        out.append("<value><struct>")
        for k, v in value.items():
            out.append("<member><name>")
            out.append(escape(str(k)))
            out.append("</name>")
            encode_value(v, out)
            out.append("</member>")
        out.append("</struct></value>")
    elif t is list or t is tuple:
        out.append("<value><array><data>")
        for v in value:
            encode_value(v, out)
        out.append("</data></array></value>")
    elif t is bool:
        out.append("<value><boolean>1</boolean></value>" if value else "<value><boolean>0</boolean></value>")
    elif t is int:
        out.append("<value>%d</value>" % value)
    elif t is float:
        out.append("<value><double>" + _fmt_double(value) + "</double></value>")
    elif t is Raw:
        out.append(value)
    elif t is DateTime:
        out.append("<value><dateTime.iso8601>" + escape(value) + "</dateTime.iso8601></value>")
    elif t is I4:
        out.append("<value><i4>%d</i4></value>" % value)
    elif value is None:
        out.append("<value></value>")
    elif isinstance(value, xmlrpc.client.DateTime):
        out.append("<value><dateTime.iso8601>" + value.value + "</dateTime.iso8601></value>")
    elif isinstance(value, dict):
        encode_value(dict(value), out)
    elif isinstance(value, (list, tuple, set, frozenset)):
        encode_value(list(value), out)
    elif isinstance(value, bool):
        encode_value(bool(value), out)
    elif isinstance(value, int):
        encode_value(int(value), out)
    elif isinstance(value, float):
        encode_value(float(value), out)
    elif isinstance(value, str):
        encode_value(str(value), out)
    else:
        raise TypeError(f"cannot encode {type(value).__name__}")


def encode(value: Any) -> str:
    out: list[str] = []
    encode_value(value, out)
    return "".join(out)


_HEAD = "<?xml version='1.0'?>\n<methodResponse><params><param>"
_TAIL = "</param></params></methodResponse>\n"


def success(value: Any) -> bytes:
    """A complete methodResponse for a successful call."""
    out = [_HEAD, "<value><struct><member><name>Status</name><value>Success</value></member>"
           "<member><name>Value</name>"]
    encode_value("" if value is None else value, out)
    out.append("</member></struct></value>")
    out.append(_TAIL)
    return "".join(out).encode("utf-8")


def failure(description: list[str]) -> bytes:
    """A complete methodResponse for a failed call."""
    out = [_HEAD, "<value><struct><member><name>Status</name><value>Failure</value></member>"
           "<member><name>ErrorDescription</name>"]
    encode_value([str(d) for d in description], out)
    out.append("</member></struct></value>")
    out.append(_TAIL)
    return "".join(out).encode("utf-8")


def task_result(value: Any) -> str:
    """A task's `result` field: the bare XML-RPC value, e.g. `<value>OpaqueRef:x</value>`."""
    return encode("" if value is None else value)


def decode_request(body: bytes) -> tuple[str, tuple[Any, ...]]:
    """(method name, params) of a methodCall; raises ValueError when unparsable."""
    try:
        params, method = xmlrpc.client.loads(body, use_builtin_types=False)
    except Exception as exc:  # expat errors, ResponseError, ...
        raise ValueError(str(exc)) from exc
    if not method:
        raise ValueError("not a methodCall")
    return method, params
