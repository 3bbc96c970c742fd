"""Liveness and readiness probes, for orchestrators and load balancers.

`/health/live` only says the process answers (restart it if not);
`/health/ready` says it can serve: configuration good, store readable and
writable, at least one configured pool reachable (send it traffic only then).
The verdict is `dynvm.core.health`'s, the same rule `/health` follows; the
reasons come first in the answer.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, current_app

from dynvm.api import access

bp = Blueprint("probes", __name__)


def _answer(report: dict[str, Any], ok: bool) -> Response:
    return Response(json.dumps(report, default=str), status=200 if ok else 503,
                    mimetype="application/json")


@bp.get("/health/live")
@access.public
def live() -> Response:
    return _answer({"status": "ok"}, True)


@bp.get("/health/ready")
@access.public
def ready() -> Response:
    report = current_app.extensions["dynvm"].health.readiness()
    return _answer(report, not report["reasons"])
