"""The HTTP layer: a Flask app factory over the core facade.

The app is built around a service the bootstrap made (`dynvm.runtime.bootstrap.
build_app` in each gunicorn worker, after the fork): this layer opens nothing
itself.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import TYPE_CHECKING

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from dynvm.api import (
    access,
    dashboard,
    errors,
    jsonbody,
    legacy,
    maintenance,
    metrics,
    monitoring,
    probes,
    signin,
    v1,
)
from dynvm.api.formatting import echo
from dynvm.api.routing import App
from dynvm.api.validation import InvalidParam
from dynvm.core.errors import AllOrNoneFailed, DynvmError, NoCapacity, StoreError
from dynvm.core.services import bind_request, unbind_request

if TYPE_CHECKING:
    from dynvm.core.services import Dynvm

__all__ = ["create_app"]

log = logging.getLogger(__name__)

TEXT = "text/plain; charset=utf-8"
ALL_OR_NONE = "all vms couldn't be created successfully"
# Any token is a valid HTTP method: label only these, so clients cannot grow /metrics.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
# Longest request target (path and query) served. gunicorn's limit_request_line
# is set above it (see dynvm.cli.main), so an over-long line gets this one-line 414.
MAX_REQUEST_TARGET = 2048


def create_app(service: Dynvm) -> Flask:
    """The app serving `service` (built by `dynvm.runtime.bootstrap`)."""
    app = App(__name__, static_folder=None)  # static files: the dashboard's /ui/static
    app.config.update(DEBUG=False, PROPAGATE_EXCEPTIONS=False, TRAP_HTTP_EXCEPTIONS=False,
                      # A chunked body is read no further than this (jsonbody: 413 past it).
                      MAX_CONTENT_LENGTH=jsonbody.READ_LIMIT)
    app.extensions["dynvm"] = service
    app.register_blueprint(legacy.bp)
    app.register_blueprint(monitoring.bp)
    app.register_blueprint(maintenance.bp)
    app.register_blueprint(probes.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(signin.bp)
    _install_hooks(app)
    access.install(app)  # after the request id: who may call which route, answer headers
    _install_error_handlers(app)
    v1.register(app)  # after the app's own handlers: it wraps them for /api/v1 paths
    return app


_REQUEST_ID_JUNK = re.compile(r"[^A-Za-z0-9_.:-]")  # what a caller's X-Request-Id may not carry


def _install_hooks(app: Flask) -> None:
    @app.before_request
    def _start() -> Response | None:
        g.started = time.monotonic()
        given = request.headers.get("X-Request-Id", "")
        request_id = (_REQUEST_ID_JUNK.sub("", given)[:64] if given else "") or os.urandom(8).hex()
        g.request_id = request_id
        g.trace_token = bind_request(request_id)  # for the core and the logs
        target = _request_target()
        if len(target) > MAX_REQUEST_TARGET:
            log.info("414 %s (%d characters)", echo(target), len(target))
            return _text(f"Error: request line too long ({len(target)} characters; "
                         f"at most {MAX_REQUEST_TARGET})", 414)
        jsonbody.refuse_oversized()  # before any route reads it
        return None

    @app.after_request
    def _finish(resp: Response) -> Response:
        route = request.endpoint or "unmatched"
        method = request.method
        started = g.get("started")
        metrics.answered(route, method if method in KNOWN_METHODS else "OTHER",
                         resp.status_code, None if started is None else time.monotonic() - started)
        resp.headers["X-Dynvm-Request-Id"] = g.get("request_id", "")
        return resp

    @app.teardown_request
    def _unbind(_exc: BaseException | None) -> None:
        token = g.pop("trace_token", None)
        if token is not None:
            unbind_request(token)


def _request_target() -> str:
    """The path and query as the client sent them (gunicorn: RAW_URI; werkzeug: REQUEST_URI)."""
    env = request.environ
    raw = env.get("RAW_URI") or env.get("REQUEST_URI")
    if raw:
        return str(raw)
    query = env.get("QUERY_STRING", "")
    return request.path + (f"?{query}" if query else "")


def _where() -> str:
    """The request, safe for a log line: control characters escaped, cut short."""
    return echo(request.full_path)


def _text(body: str, status: int) -> Response:
    return Response(body, status=status, content_type=TEXT)


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(InvalidParam)
    def _invalid(exc: InvalidParam) -> Response:
        metrics.FAILURES.labels("bad_request").inc()
        log.info("400 %s: %s", _where(), exc.message)
        return _text(f"Error: {exc.message}", 400)

    @app.errorhandler(DynvmError)
    def _core(exc: DynvmError) -> Response:
        message = exc.message.strip()
        status = errors.status_of(exc)
        if isinstance(exc, NoCapacity):
            reason = "no_capacity"
            body = f"Error: {errors.detail_of(exc)}"
        elif isinstance(exc, AllOrNoneFailed):
            reason = "all_or_none"
            # The core says "all vms couldn't be created successfully: <reasons>".
            detail = message.removeprefix(ALL_OR_NONE).lstrip(":").strip()
            body = ALL_OR_NONE + (f"\n{detail}" if detail else "")
        else:
            reason = re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()
            body = message if message.startswith("Error:") else f"Error: {message}"
        metrics.FAILURES.labels(reason).inc()
        # A 404 (releasing an expired VM) or a 409 is routine; failures to serve are not.
        log.log(logging.WARNING if status >= 499 else logging.INFO,
                "%d %s: %s", status, _where(), echo(message, 2000))
        resp = _text(body, status)
        resp.headers.update(getattr(exc, "headers", {}))  # WWW-Authenticate, Retry-After
        return resp

    @app.errorhandler(StoreError)
    def _store(exc: StoreError) -> Response:
        # Locked, full, read-only or lost store: an outage to retry, never a 500.
        metrics.FAILURES.labels("store_down").inc()
        reason = " ".join(str(exc).split())[:200]
        log.warning("503 %s: store unavailable: %s", request.full_path, reason)
        return _text(f"Error: the state store is unavailable ({reason})", 503)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        code = exc.code or 500
        if code == 404:
            body = f"Error: no such route: {echo(request.path)}"
        elif code == 413:
            body = f"Error: {exc.description}"
        elif code == 405:
            body = f"Error: method {echo(request.method, 20)} not allowed on {echo(request.path)}"
        else:
            body = f"Error: {exc.name}"
        resp = _text(body, code)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            resp.headers["Allow"] = ", ".join(exc.valid_methods)  # required on a 405
        return resp

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        rid = g.get("request_id", "")
        log.exception("unexpected error on %s (request %s)", _where(), rid)
        metrics.FAILURES.labels("internal").inc()
        return _text(f"Error: internal error ({type(exc).__name__}); request id {rid}", 500)
