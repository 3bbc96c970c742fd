"""The HTTP layer: a Flask app factory over the core facade.

Gunicorn calls `dynvm.api:create_app()` in each worker (no preload), so every
worker opens its own store and Xen sessions after the fork.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import time
import uuid
from typing import TYPE_CHECKING

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from dynvm.api import legacy, metrics, ops, v1
from dynvm.api.validation import InvalidParam
from dynvm.core.service import AllOrNoneFailed, DynvmError, NoCapacity

if TYPE_CHECKING:
    from dynvm.core.service import Dynvm

__all__ = ["create_app"]

log = logging.getLogger(__name__)

TEXT = "text/plain; charset=utf-8"
NO_CAPACITY = "Error: No capacity is available!"
ALL_OR_NONE = "all vms couldn't be created successfully"
# Any token is a valid HTTP method: label only these, so clients cannot grow /metrics.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


def create_app(config_path: str | None = None, *, service: Dynvm | None = None) -> Flask:
    """Build the app around `service`, or around a core built from the config file.

    The file is `config_path`, else $DYNVM_CONFIG.
    """
    if service is None:
        path = config_path or os.environ.get("DYNVM_CONFIG")
        if not path:
            raise RuntimeError("no configuration: pass a config path or set DYNVM_CONFIG")
        from dynvm.wiring import build_service

        service = build_service(path)
        atexit.register(service.close)

    app = Flask(__name__)
    app.config.update(DEBUG=False, PROPAGATE_EXCEPTIONS=False, TRAP_HTTP_EXCEPTIONS=False)
    app.extensions["dynvm"] = service
    app.register_blueprint(legacy.bp)
    app.register_blueprint(ops.bp)
    _install_hooks(app)
    _install_error_handlers(app)
    v1.register(app)  # after the app's own handlers: it wraps them for /api/v1 paths
    return app


def _install_hooks(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        g.started = time.monotonic()
        given = re.sub(r"[^A-Za-z0-9_.:-]", "", request.headers.get("X-Request-Id", ""))[:64]
        g.request_id = given or uuid.uuid4().hex[:16]

    @app.after_request
    def _finish(resp: Response) -> Response:
        route = request.endpoint or "unmatched"
        method = request.method if request.method in KNOWN_METHODS else "OTHER"
        metrics.REQUESTS.labels(route, method, str(resp.status_code)).inc()
        started = g.get("started")
        if started is not None:
            metrics.LATENCY.labels(route).observe(time.monotonic() - started)
        resp.headers["X-Dynvm-Request-Id"] = g.get("request_id", "")
        return resp


def _text(body: str, status: int) -> Response:
    return Response(body, status=status, content_type=TEXT)


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(InvalidParam)
    def _invalid(exc: InvalidParam) -> Response:
        metrics.FAILURES.labels("bad_request").inc()
        log.info("400 %s: %s", request.full_path, exc.message)
        return _text(f"Error: {exc.message}", 400)

    @app.errorhandler(DynvmError)
    def _core(exc: DynvmError) -> Response:
        message = exc.message.strip()
        if isinstance(exc, NoCapacity):
            reason = "no_capacity"
            body = message if message.startswith(NO_CAPACITY) else \
                f"{NO_CAPACITY} {message.removeprefix('Error:').strip()}".strip()
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
        log.log(logging.WARNING if exc.status >= 499 else logging.INFO,
                "%d %s: %s", exc.status, request.full_path, message)
        return _text(body, exc.status)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        code = exc.code or 500
        if code == 404:
            body = f"Error: no such route: {request.path}"
        elif code == 405:
            body = f"Error: method {request.method} not allowed on {request.path}"
        else:
            body = f"Error: {exc.name}"
        resp = _text(body, code)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            resp.headers["Allow"] = ", ".join(exc.valid_methods)  # required on a 405
        return resp

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        rid = g.get("request_id", "")
        log.exception("unexpected error on %s (request %s)", request.full_path, rid)
        metrics.FAILURES.labels("internal").inc()
        return _text(f"Error: internal error ({type(exc).__name__}); request id {rid}", 500)
