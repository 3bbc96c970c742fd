"""/api/v1: asynchronous requests, ownership by token, quotas; problem details on errors.

`register(app)` adds the blueprint and problem answers for /api/v1 paths that
fail before reaching a view (unknown method, say). Tokens are checked for
every route by `dynvm.api.access`.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request
from werkzeug.exceptions import HTTPException

from dynvm.api.v1 import problems, routes

__all__ = ["register"]


def _is_v1() -> bool:
    return request.path == "/api/v1" or request.path.startswith("/api/v1/")


def register(app: Flask) -> None:
    app.register_blueprint(routes.bp)

    # Errors raised before a view is chosen go to the app's handlers: answer
    # problems on /api/v1 paths, leave every other path's answer as it was.
    spec = app.error_handler_spec.setdefault(None, {}).setdefault(None, {})
    for cls in (HTTPException, Exception):
        previous = spec.get(cls)

        def handler(exc: Any, previous: Any = previous) -> Any:
            if _is_v1() or previous is None:
                return problems.from_exception(exc)
            return previous(exc)
        spec[cls] = handler
