"""The id of the HTTP request being served, visible to every layer and log line.

The API binds it for the duration of a request; the core makes it the id of
the request record (and so of the history documents and progress entries), and
a logging filter stamps it on every record, so one grep follows a request
from the access log through the build threads to the store.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager

ACCESS_ATOM = "{x-dynvm-request-id}o"  # gunicorn's access-log atom of the response header
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("dynvm_request_id", default="")


def current() -> str:
    """The request id bound in this context, "" outside a request."""
    return REQUEST_ID.get()


def bind_request(request_id: str) -> contextvars.Token[str]:
    """Bind `request_id` until `unbind_request` (an HTTP request's first and last hooks)."""
    return REQUEST_ID.set(request_id)


def unbind_request(token: contextvars.Token[str]) -> None:
    """Undo `bind_request`."""
    try:
        REQUEST_ID.reset(token)
    except ValueError:  # set in another context: nothing of ours to undo
        REQUEST_ID.set("")


@contextmanager
def bound(request_id: str) -> Iterator[None]:
    """Bind `request_id` for the code run inside the block."""
    token = REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        REQUEST_ID.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` ("-" when none) to every record passing the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            rid = REQUEST_ID.get()
            if not rid and isinstance(record.args, dict):
                # gunicorn's access line, logged after the request: its atoms carry
                # the response header.
                rid = str(record.args.get(ACCESS_ATOM, "")).strip("-")
            record.request_id = rid or "-"
        return True
