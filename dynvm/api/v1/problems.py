"""RFC 7807 problem details: every v1 error, whatever raised it."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from flask import Response, g, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from dynvm.api.errors import detail_of, status_of
from dynvm.core.errors import DynvmError, QuotaExceeded, StoreError

log = logging.getLogger("dynvm.api.v1")

MIME = "application/problem+json"


def problem(status: int, detail: str, **extra: Any) -> Response:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return Response(json.dumps(body), status=status, mimetype=MIME)


def from_exception(exc: Exception) -> Response:
    """The problem answer for anything a v1 route raised."""
    if isinstance(exc, ValidationError):
        errors = [{"loc": [str(x) for x in e["loc"]], "msg": e["msg"]} for e in exc.errors()]
        return problem(422, "the request does not match the schema", errors=errors)
    if isinstance(exc, DynvmError):
        detail = detail_of(exc)
        status = status_of(exc)
        extra: dict[str, Any] = {}
        if isinstance(exc, QuotaExceeded):
            extra = {"limit": exc.limit, "quota": exc.quota, "used": exc.used,
                     "asked": exc.asked}
        resp = problem(status, detail, **extra)
        resp.headers.update(getattr(exc, "headers", {}))  # WWW-Authenticate, Retry-After
        log.log(logging.WARNING if status >= 500 else logging.INFO, "%d %s %s: %s",
                status, request.method, request.path, detail)
        return resp
    if isinstance(exc, StoreError):
        log.warning("%s %s: state store: %s", request.method, request.path, exc)
        return problem(503, "the state store is unreachable; try again shortly")
    if isinstance(exc, HTTPException):
        code = exc.code or 500
        resp = problem(code, exc.description or exc.name)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            resp.headers["Allow"] = ", ".join(exc.valid_methods)
        return resp
    rid = g.get("request_id", "")
    log.exception("unexpected error on %s %s (request %s)", request.method, request.path, rid)
    return problem(500, f"internal error ({type(exc).__name__}); request id {rid}")
